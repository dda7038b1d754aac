"""Parts the task plugins share: CIFAR and pose task bases, exact metrics, augmentation, heatmaps."""

"""ReLoss (Huang et al., ICLR 2022): a loss network trained to rank batches like the exact metric."""

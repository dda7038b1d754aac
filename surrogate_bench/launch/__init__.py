"""Many runs: sequential, --jobs processes and submitit/Slurm executors, grids, tuning, signals."""

"""What a task and a method are, and how they are found by name."""

"""The built-in task and method plugins.

In a source checkout they are the repository's ``tasks/`` and ``methods/`` folders (one file per
plugin); a wheel installs the same files here, as ``surrogate_bench.builtin.tasks`` / ``.methods``.
The registry finds them by path either way (``surrogate_bench.paths.builtin_plugin_root``).
"""

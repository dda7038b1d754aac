"""Built-in loss methods, one file each; the registry discovers them by path (files starting with _ are skipped)."""

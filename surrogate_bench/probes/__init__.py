"""Why a loss wins: probe pools and the probes run on them."""

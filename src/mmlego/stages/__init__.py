"""The modelling stages of the workflow as library functions: blocks, latent caches,
LegoMerge, LegoFuse, baselines and evaluation. Workflow scripts only call these."""

"""Pictures for the Snakemake report, one module per stage (matplotlib, Agg backend)."""

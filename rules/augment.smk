# The materialised, elastically augmented training set (section 3.1).


rule augment_set:
    input:
        image=data_array("image", samples_of("train")),
        labels=data_array("labels", samples_of("train")),
        weights=data_array("weights", samples_of("train")),
    output:
        store="results/augmented.zarr/zarr.json",  # the store's root file, not directory(): see predictions()
        examples=report("results/augment/examples.png", caption="../report/augment.rst", category="2. Augmentation"),
    log:
        "results/logs/augment.log",
    benchmark:
        "results/benchmarks/augment.tsv"
    params:
        samples=samples_of("train"),
        cfg=config["augment"],
        weights_cfg=config["weights"],
        seed=config["seed"],
    threads: config["resources"]["cpu"]["threads"]
    resources:
        **cpu_resources(),
    conda:
        conda_env("cpu")
    script:
        "../scripts/augment.py"


rule augment:
    input:
        rules.augment_set.output,
    localrule: True

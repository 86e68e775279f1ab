# Training on the augmented set with the weighted loss (section 3).


rule train_model:
    input:
        augmented="results/augmented.zarr",
        val=data_array("weights", samples_of("val")),
    output:
        model="results/model/model.pt",
        metrics=report("results/train/metrics.tsv", caption="../report/train_metrics.rst", category="3. Training"),
        curve=report("results/train/loss.png", caption="../report/train_curve.rst", category="3. Training"),
    log:
        "results/logs/train.log",
    benchmark:
        "results/benchmarks/train.tsv"
    params:
        # Not an output: Snakemake deletes failed outputs, and a preempted job must resume from here.
        checkpoints="results/train/checkpoints",
        val_stores=[DATA.format(sample=s) for s in samples_of("val")],
        model=config["model"],
        train=config["train"],
        normalization=normalization(),
        seed=config["seed"],
    threads: config["resources"]["gpu"]["threads"]
    resources:
        **gpu_resources(),
    conda:
        "../envs/tileunet-cuda.yaml"
    script:
        "../scripts/train.py"


rule train:
    input:
        rules.train_model.output,
    localrule: True

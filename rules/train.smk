# Training on the augmented set with the weighted loss (section 3).


rule train_model:
    input:
        augmented="results/augmented.zarr/zarr.json",
        val=data_array("weights", samples_of("val")),
    output:
        model="results/model/model.pt",
        metrics="results/train/metrics.tsv",
        curve=report("results/train/loss.png", caption="../report/train_curve.rst", category="3. Training"),
    log:
        "results/logs/train.log",
    benchmark:
        "results/benchmarks/train.tsv"
    params:
        # Not an output: Snakemake deletes failed outputs, and a preempted job must resume from here.
        # Both paths derive from input/output so that an ablation module's replace_prefix applies.
        checkpoints=lambda wildcards, output: os.path.join(os.path.dirname(output.metrics), "checkpoints"),
        val_stores=lambda wildcards, input: [group_of(p) for p in input.val],
        model=config["model"],
        train=config["train"],
        normalization=normalization(),
        seed=config["seed"],
    threads: config["resources"]["gpu"]["threads"]
    resources:
        **gpu_resources(),
    conda:
        conda_env("train")
    script:
        "../scripts/train.py"


rule train:
    input:
        rules.train_model.output,
    localrule: True

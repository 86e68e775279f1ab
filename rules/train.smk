# Training on the augmented set with the weighted loss (section 3).
# train.ensemble == 1: one job (train_model) writes model.pt. train.ensemble == N > 1: N jobs
# (train_member, one GPU each, seeds from tileunet.repeats.member_seed) train the members,
# then one job (train_model) joins them into model.pt with the post-processing chosen on the
# validation images for their mean.
MEMBERS = ensemble_members()


rule:
    name:
        "train_member" if MEMBERS else "train_model"
    input:
        augmented="results/augmented.zarr/zarr.json",
        val=data_array("weights", samples_of("val")),
    output:
        **training_outputs(member=bool(MEMBERS)),
    log:
        training_path("results/logs/", ".log", member=bool(MEMBERS)),
    benchmark:
        training_path("results/benchmarks/", ".tsv", member=bool(MEMBERS))
    params:
        # Not an output: Snakemake deletes failed outputs, and a preempted job must resume from here.
        # Both paths derive from input/output so that an ablation module's replace_prefix applies.
        checkpoints=lambda wildcards, output: os.path.join(os.path.dirname(output.metrics), "checkpoints"),
        val_stores=lambda wildcards, input: [group_of(p) for p in input.val],
        model=config["model"],
        train=member_train_config(member=bool(MEMBERS)),
        normalization=normalization(),
        seed=training_seed(member=bool(MEMBERS)),
    threads: config["resources"]["gpu"]["threads"]
    resources:
        **gpu_resources(),
    conda:
        conda_env("train")
    script:
        "../scripts/train.py"


if MEMBERS:

    rule train_model:
        input:
            members=expand(training_outputs(member=True)["model"], member=MEMBERS),
            metrics=expand(training_outputs(member=True)["metrics"], member=MEMBERS),
            augmented="results/augmented.zarr/zarr.json",
            val=data_array("weights", samples_of("val")),
        output:
            **training_outputs(),
        log:
            training_path("results/logs/", ".log"),
        benchmark:
            training_path("results/benchmarks/", ".tsv")
        params:
            val_stores=lambda wildcards, input: [group_of(p) for p in input.val],
            train=member_train_config(),
        threads: config["resources"]["gpu"]["threads"]
        resources:
            **gpu_resources(),
        conda:
            conda_env("train")
        script:
            "../scripts/ensemble.py"


rule train:
    input:
        rules.train_model.output,
    localrule: True

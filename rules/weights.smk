# The paper's weight map for every train and val sample (section 3).


rule class_frequencies:
    input:
        labels=data_array("labels", samples_of("train")),
    output:
        "results/weights/class_frequencies.json",
    log:
        "results/logs/weights/class_frequencies.log",
    benchmark:
        "results/benchmarks/weights/class_frequencies.tsv"
    params:
        stores=lambda wildcards, input: [group_of(p) for p in input.labels],
    threads: 1
    resources:
        **cpu_resources(),
    conda:
        conda_env("cpu")
    script:
        "../scripts/class_frequencies.py"


rule weights_sample:
    input:
        image="results/data/{sample}.zarr/image/zarr.json",
        labels="results/data/{sample}.zarr/labels/zarr.json",
        frequencies=class_frequencies_input(),
    output:
        weights="results/data/{sample}.zarr/weights/zarr.json",
        preview=report("results/weights/{sample}.png", caption="../report/weights.rst", category="1. Data"),
    log:
        "results/logs/weights/{sample}.log",
    benchmark:
        "results/benchmarks/weights/{sample}.tsv"
    params:
        store=lambda wildcards, output: group_of(output.weights),
        cfg=config["weights"],
    threads: 1
    resources:
        **cpu_resources(),
    conda:
        conda_env("cpu")
    script:
        "../scripts/weights.py"


rule weights:
    input:
        data_array("weights", samples_of("train", "val")),
    localrule: True

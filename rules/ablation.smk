# Repeated runs, each the whole pipeline under its own prefix: the main configuration with
# repeat.runs seeds (`repeat`), and every variant of config/ablation.yaml with the same seeds
# (`ablation`); tables and figures of mean ± sd over seeds.
include: "runs.smk"


for name, rule_prefix, run_cfg, prefix in repeated_runs():

    module:
        name: name
        snakefile: "pipeline.smk"
        config: run_cfg
        replace_prefix: {"results/": prefix}

    use rule * from name exclude demo_data as rule_prefix*


rule repeat_table:
    input:
        metrics=run_metrics(["main"])["metrics"],
    output:
        runs="results/repeat/runs.tsv",
        table="results/repeat/summary.tsv",
        html=report("results/repeat/summary.html", caption="../report/repeat.rst", category="5. Repeated runs"),
        figure=report("results/repeat/summary.png", caption="../report/repeat.rst", category="5. Repeated runs"),
    log:
        "results/logs/repeat_table.log",
    benchmark:
        "results/benchmarks/repeat_table.tsv"
    params:
        variants=run_metrics(["main"])["variants"],
        seeds=run_metrics(["main"])["seeds"],
        title="The main configuration over seeds: test summary, mean ± sd, then each seed",
    threads: 1
    resources:
        **cpu_resources(),
    conda:
        conda_env("cpu")
    script:
        "../scripts/compare_runs.py"


rule ablation_table:
    input:
        metrics=run_metrics(["main", *ABLATION])["metrics"],
    output:
        runs="results/ablation/runs.tsv",
        table="results/ablation/comparison.tsv",
        html=report("results/ablation/comparison.html", caption="../report/ablation.rst", category="6. Ablation"),
        figure=report("results/ablation/comparison.png", caption="../report/ablation.rst", category="6. Ablation"),
    log:
        "results/logs/ablation_table.log",
    benchmark:
        "results/benchmarks/ablation_table.tsv"
    params:
        variants=run_metrics(["main", *ABLATION])["variants"],
        seeds=run_metrics(["main", *ABLATION])["seeds"],
        title="Ablation: test summary per variant, mean ± sd over seeds, then each run",
    threads: 1
    resources:
        **cpu_resources(),
    conda:
        conda_env("cpu")
    script:
        "../scripts/compare_runs.py"


rule repeat:
    input:
        rules.repeat_table.output,
    localrule: True


rule ablation:
    input:
        rules.ablation_table.output,
    localrule: True

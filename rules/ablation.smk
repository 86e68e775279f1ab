# The weight-map ablation: the whole pipeline once per variant of config/ablation.yaml,
# under results/ablation/{variant}/, then one comparison table and figure.
module ablation_full:
    snakefile:
        "pipeline.smk"
    config:
        variant_config(ABLATION["full"])
    replace_prefix:
        {"results/": "results/ablation/full/"}


module ablation_class_balance:
    snakefile:
        "pipeline.smk"
    config:
        variant_config(ABLATION["class_balance"])
    replace_prefix:
        {"results/": "results/ablation/class_balance/"}


module ablation_none:
    snakefile:
        "pipeline.smk"
    config:
        variant_config(ABLATION["none"])
    replace_prefix:
        {"results/": "results/ablation/none/"}


use rule * from ablation_full exclude demo_data as ablation_full_*


use rule * from ablation_class_balance exclude demo_data as ablation_class_balance_*


use rule * from ablation_none exclude demo_data as ablation_none_*


rule ablation_table:
    input:
        metrics=expand("results/ablation/{variant}/evaluation/metrics.tsv", variant=list(ABLATION))
        + ["results/evaluation/metrics.tsv"],
    output:
        table="results/ablation/comparison.tsv",
        html=report("results/ablation/comparison.html", caption="../report/ablation.rst", category="5. Ablation"),
        figure=report("results/ablation/comparison.png", caption="../report/ablation.rst", category="5. Ablation"),
    log:
        "results/logs/ablation_table.log",
    benchmark:
        "results/benchmarks/ablation_table.tsv"
    params:
        variants=list(ABLATION) + [main_run_name()],
    threads: 1
    resources:
        **cpu_resources(),
    conda:
        "../envs/tileunet.yaml"
    script:
        "../scripts/ablation_table.py"


rule ablation:
    input:
        rules.ablation_table.output,
    localrule: True

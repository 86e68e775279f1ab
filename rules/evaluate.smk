# Metrics and overlays on the test split: pixel, Rand (ISBI 2012) and instance
# scores per test image plus a summary row; overlay PNGs of predicted and true cells.


rule evaluate_test:
    input:
        predictions=predictions(samples_of("test")),
        labels=data_array("labels", samples_of("test")),
        images=data_array("image", samples_of("test")),
    output:
        metrics="results/evaluation/metrics.tsv",
        table=report("results/evaluation/metrics.html", caption="../report/metrics.rst", category="4. Evaluation"),
        overlays=report(
            directory("results/evaluation/overlays"),
            patterns=["{name}.png"],
            caption="../report/overlays.rst",
            category="4. Evaluation",
        ),
    log:
        "results/logs/evaluate.log",
    benchmark:
        "results/benchmarks/evaluate.tsv"
    params:
        samples=samples_of("test"),
        cfg=config["evaluate"],
    threads: 1
    resources:
        **cpu_resources(),
    conda:
        conda_env("cpu")
    script:
        "../scripts/evaluate.py"


rule evaluate:
    input:
        rules.evaluate_test.output,
    localrule: True

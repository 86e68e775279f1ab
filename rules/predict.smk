# Chunked overlap-tile inference into OME-Zarr (section 2, figure 2).
# predict.parts == 1: one job per slide. predict.parts == N > 1: scatter-gather, i.e. one
# job creates the store (predict_prepare), N jobs (predict_part, one GPU each) fill bands of
# whole chunk rows, one job (predict_gather) labels, builds the pyramids and publishes; the
# result equals the one-job run. Prepare and gather need no GPU: CPU resources and env.
# The output is the store's root zarr.json, not directory(): see predictions() in common.smk.


if config["predict"]["parts"] == 1:

    rule predict_sample:
        input:
            model="results/model/model.pt",
            image=get_source("image"),
        output:
            "results/predictions/{sample}.ome.zarr/zarr.json",
        log:
            "results/logs/predict/{sample}.log",
        benchmark:
            "results/benchmarks/predict/{sample}.tsv"
        params:
            # Work folder (store in progress + one done marker per chunk) so a killed run resumes.
            work=predict_work,
            step="all",
            cfg=config["predict"],
            channels=config["ingest"]["channels"],
            level=input_level,
        threads: config["resources"]["gpu"]["threads"]
        resources:
            **gpu_resources(),
        conda:
            conda_env("predict")
        script:
            "../scripts/predict.py"

else:

    rule predict_prepare:
        input:
            model="results/model/model.pt",
            image=get_source("image"),
        output:
            touch("results/predictions/.{sample}.parts/prepared"),
        log:
            "results/logs/predict/{sample}.prepare.log",
        benchmark:
            "results/benchmarks/predict/{sample}.prepare.tsv"
        params:
            work=predict_work,
            step="prepare",
            cfg=config["predict"],
            channels=config["ingest"]["channels"],
            level=input_level,
        threads: 1
        resources:
            **cpu_resources(),
        conda:
            conda_env("cpu")
        script:
            "../scripts/predict.py"

    rule predict_part:
        input:
            model="results/model/model.pt",
            image=get_source("image"),
            prepared="results/predictions/.{sample}.parts/prepared",
        output:
            touch("results/predictions/.{sample}.parts/part{part}.done"),
        log:
            "results/logs/predict/{sample}.part{part}.log",
        benchmark:
            "results/benchmarks/predict/{sample}.part{part}.tsv"
        params:
            work=predict_work,
            step="part",
            cfg=config["predict"],
            channels=config["ingest"]["channels"],
            level=input_level,
        threads: config["resources"]["gpu"]["threads"]
        resources:
            **gpu_resources(),
        conda:
            conda_env("predict")
        script:
            "../scripts/predict.py"

    rule predict_gather:
        input:
            model="results/model/model.pt",
            image=get_source("image"),
            parts=expand(
                "results/predictions/.{{sample}}.parts/part{part}.done", part=range(config["predict"]["parts"])
            ),
        output:
            "results/predictions/{sample}.ome.zarr/zarr.json",
        log:
            "results/logs/predict/{sample}.log",
        benchmark:
            "results/benchmarks/predict/{sample}.tsv"
        params:
            work=predict_work,
            step="gather",
            cfg=config["predict"],
            channels=config["ingest"]["channels"],
            level=input_level,
        threads: 1
        resources:
            **cpu_resources(),
        conda:
            conda_env("cpu")
        script:
            "../scripts/predict.py"


rule predict:
    input:
        predictions(samples_of("test", "predict")),
    localrule: True

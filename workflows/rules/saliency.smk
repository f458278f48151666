rule saliency_batch:
    input:
        bundles=fold_bundles,
        index=task_index,
        manifests=batch_manifests,
        predictions=f"{RESULTS}/predict/{{task}}/batches/{{batch}}.tsv",
    output:
        summaries=f"{RESULTS}/saliency/{{task}}/batches/{{batch}}.tsv",
    params:
        medcnn=MEDCNN,
        configfile=CONFIGFILE,
        saliency=lambda wc: config["tasks"][wc.task]["saliency"],
    group:
        "batch"
    threads: config["resources"]["saliency"]["threads"]
    resources:
        **stage_resources("saliency"),
    log:
        f"{LOGS}/saliency/{{task}}/{{batch}}.log",
    benchmark:
        f"{BENCHMARKS}/saliency/{{task}}/{{batch}}.tsv",
    conda:
        "../envs/medcnn.yaml"
    shell:
        "{params.medcnn} saliency --config {params.configfile} --task {wildcards.task}"
        " --batch {wildcards.batch} --threads {threads} > {log} 2>&1"

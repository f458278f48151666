rule predict_batch:
    input:
        bundles=fold_bundles,
        index=task_index,
        manifests=batch_manifests,
        split=task_split,
    output:
        predictions=f"{RESULTS}/predict/{{task}}/batches/{{batch}}.tsv",
    group:
        "batch"
    params:
        medcnn=MEDCNN,
        configfile=CONFIGFILE,
        predict=lambda wc: config["tasks"][wc.task].get("predict", {}),
    threads: config["resources"]["predict"]["threads"]
    resources:
        **stage_resources("predict"),
    log:
        f"{LOGS}/predict/{{task}}/{{batch}}.log",
    benchmark:
        f"{BENCHMARKS}/predict/{{task}}/{{batch}}.tsv",
    conda:
        "../envs/medcnn.yaml"
    shell:
        "{params.medcnn} predict --config {params.configfile} --task {wildcards.task}"
        " --batch {wildcards.batch} --threads {threads} > {log} 2>&1"


rule evaluate_model:
    input:
        predictions=batch_outputs("predict"),
        split=f"{RESULTS}/splits/{{task}}.json",
    output:
        evaluation=f"{RESULTS}/models/{{task}}/evaluation.json",
        # the reliability diagram (classification), predicted vs reference (segmentation)
        figure=f"{RESULTS}/models/{{task}}/evaluation.png",
    params:
        medcnn=MEDCNN,
        configfile=CONFIGFILE,
        evaluation=lambda wc: config["tasks"][wc.task].get("evaluation", {}),
    threads: config["resources"]["report"]["threads"]
    resources:
        **stage_resources("report"),
    log:
        f"{LOGS}/evaluate/{{task}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate/{{task}}.tsv",
    conda:
        "../envs/medcnn.yaml"
    shell:
        "{params.medcnn} evaluate --config {params.configfile} --task {wildcards.task} > {log} 2>&1"

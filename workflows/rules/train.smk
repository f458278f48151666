rule train_model:
    input:
        plans=f"{RESULTS}/preprocess/{{task}}/plans.json",
        index=f"{RESULTS}/preprocess/{{task}}/index.tsv",
        split=f"{RESULTS}/splits/{{task}}.json",
    output:
        bundle=f"{RESULTS}/models/{{task}}/fold{{fold}}/bundle.json",
        metrics=f"{RESULTS}/models/{{task}}/fold{{fold}}/metrics.json",
        history=f"{RESULTS}/models/{{task}}/fold{{fold}}/history.csv",
    params:
        medcnn=MEDCNN,
        configfile=CONFIGFILE,
        settings=lambda wc: {
            k: config["tasks"][wc.task].get(k, {})
            for k in ("target", "network", "train", "evaluation", "segmentation")
        },
        device=config["device"],
    threads: config["resources"]["train"]["threads"]
    resources:
        **stage_resources("train"),
    log:
        f"{LOGS}/train/{{task}}_fold{{fold}}.log",
    benchmark:
        f"{BENCHMARKS}/train/{{task}}_fold{{fold}}.tsv",
    conda:
        "../envs/medcnn.yaml"
    shell:
        "{params.medcnn} train --config {params.configfile} --task {wildcards.task} --fold {wildcards.fold}"
        " --threads {threads} > {log} 2>&1"

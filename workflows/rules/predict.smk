rule predict_subject:
    input:
        bundles=fold_bundles,
        index=task_index,
        manifest=f"{RESULTS}/ingest/{{subject}}/manifest.tsv",
        split=task_split,
    output:
        prediction=f"{RESULTS}/predict/{{task}}/{{subject}}.json",
    group:
        "subject"
    params:
        configfile=CONFIGFILE,
        predict=lambda wc: config["tasks"][wc.task].get("predict", {}),
    threads: config["resources"]["predict"]["threads"]
    resources:
        **stage_resources("predict"),
    log:
        f"{LOGS}/predict/{{task}}/{{subject}}.log",
    shell:
        "medcnn predict --config {params.configfile} --task {wildcards.task}"
        " --subject {wildcards.subject} --threads {threads} > {log} 2>&1"


rule evaluate_model:
    input:
        predictions=lambda wc: expand(
            f"{RESULTS}/predict/{wc.task}/{{subject}}.json", subject=subjects()
        ),
        split=f"{RESULTS}/splits/{{task}}.json",
    output:
        evaluation=f"{RESULTS}/models/{{task}}/evaluation.json",
        reliability=f"{RESULTS}/models/{{task}}/reliability.png",
    params:
        configfile=CONFIGFILE,
        evaluation=lambda wc: config["tasks"][wc.task].get("evaluation", {}),
    threads: config["resources"]["report"]["threads"]
    resources:
        **stage_resources("report"),
    log:
        f"{LOGS}/evaluate/{{task}}.log",
    shell:
        "medcnn evaluate --config {params.configfile} --task {wildcards.task} > {log} 2>&1"

rule saliency_subject:
    input:
        bundles=fold_bundles,
        index=task_index,
        manifest=f"{RESULTS}/ingest/{{subject}}/manifest.tsv",
        prediction=f"{RESULTS}/predict/{{task}}/{{subject}}.json",
    output:
        summary=f"{RESULTS}/saliency/{{task}}/{{subject}}/saliency.json",
    params:
        configfile=CONFIGFILE,
        saliency=lambda wc: config["tasks"][wc.task]["saliency"],
    group:
        "subject"
    threads: config["resources"]["saliency"]["threads"]
    resources:
        **stage_resources("saliency"),
    log:
        f"{LOGS}/saliency/{{task}}/{{subject}}.log",
    shell:
        "medcnn saliency --config {params.configfile} --task {wildcards.task}"
        " --subject {wildcards.subject} --threads {threads} > {log} 2>&1"

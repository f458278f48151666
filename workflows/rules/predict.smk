rule predict_subject:
    input:
        bundles=fold_bundles,
        index=f"{RESULTS}/preprocess/{{task}}/index.tsv",
        split=f"{RESULTS}/splits/{{task}}.json",
    output:
        prediction=f"{RESULTS}/predict/{{task}}/{{subject}}.json",
    group:
        "subject"
    params:
        configfile=CONFIGFILE,
    threads: config["resources"]["predict"]["threads"]
    resources:
        **stage_resources("predict"),
    log:
        f"{LOGS}/predict/{{task}}/{{subject}}.log",
    shell:
        "medcnn predict --config {params.configfile} --task {wildcards.task}"
        " --subject {wildcards.subject} --threads {threads} > {log} 2>&1"

rule report_subject:
    input:
        manifest=f"{RESULTS}/ingest/manifest.tsv",
        predictions=expand(f"{RESULTS}/predict/{{task}}/{{{{subject}}}}.json", task=TASKS),
        saliency=expand(f"{RESULTS}/saliency/{{task}}/{{{{subject}}}}/saliency.json", task=TASKS),
    output:
        html=f"{RESULTS}/reports/{{subject}}.html",
    group:
        "subject"
    params:
        configfile=CONFIGFILE,
    threads: config["resources"]["report"]["threads"]
    resources:
        **stage_resources("report"),
    log:
        f"{LOGS}/report/{{subject}}.log",
    shell:
        "medcnn report --config {params.configfile} --subject {wildcards.subject} > {log} 2>&1"


rule report_cohort:
    input:
        manifest=f"{RESULTS}/ingest/manifest.tsv",
        quarantine=f"{RESULTS}/ingest/quarantine.tsv",
        predictions=lambda wc: expand(
            f"{RESULTS}/predict/{{task}}/{{subject}}.json", task=TASKS, subject=subjects()
        ),
        histories=expand(f"{RESULTS}/models/{{task}}/fold0/history.csv", task=TASKS),
    output:
        html=f"{RESULTS}/reports/cohort.html",
        metrics=f"{RESULTS}/reports/cohort.json",
    params:
        configfile=CONFIGFILE,
    threads: config["resources"]["report"]["threads"]
    resources:
        **stage_resources("report"),
    log:
        f"{LOGS}/report/cohort.log",
    shell:
        "medcnn report --config {params.configfile} --cohort > {log} 2>&1"

rule report_subject:
    input:
        # the subject's own manifest: unchanged when only other subjects arrive
        manifest=f"{RESULTS}/ingest/{{subject}}/manifest.tsv",
        predictions=expand(f"{RESULTS}/predict/{{task}}/{{{{subject}}}}.json", task=TASKS),
        saliency=expand(f"{RESULTS}/saliency/{{task}}/{{{{subject}}}}/saliency.json", task=TASKS),
    output:
        html=report(
            f"{RESULTS}/reports/{{subject}}.html",
            caption="../report/subject.rst",
            category="Subjects",
            labels={"subject": "{subject}", "format": "HTML"},
        ),
        pdf=report(
            f"{RESULTS}/reports/{{subject}}.pdf",
            caption="../report/subject_pdf.rst",
            category="Subjects",
            labels={"subject": "{subject}", "format": "PDF"},
        ),
    group:
        "subject"
    params:
        configfile=CONFIGFILE,
        report=config["report"],
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
        saliency=lambda wc: expand(
            f"{RESULTS}/saliency/{{task}}/{{subject}}/saliency.json", task=TASKS, subject=subjects()
        ),
        metrics=lambda wc: [
            f"{RESULTS}/models/{task}/fold{k}/metrics.json"
            for task in TRAINED
            for k in range(n_folds(task))
        ],
        evaluations=expand(f"{RESULTS}/models/{{task}}/evaluation.json", task=TRAINED),
    output:
        html=report(
            f"{RESULTS}/reports/cohort.html",
            caption="../report/cohort.rst",
            category="Cohort",
            labels={"figure": "cohort report"},
        ),
        metrics=f"{RESULTS}/reports/cohort.json",
        table=f"{RESULTS}/reports/cohort.tsv",
        roc=report(
            expand(f"{RESULTS}/reports/figures/{{task}}_roc.png", task=TASKS),
            caption="../report/roc.rst",
            category="Evaluation",
        ),
        reliability=report(
            expand(f"{RESULTS}/reports/figures/{{task}}_reliability.png", task=TASKS),
            caption="../report/reliability.rst",
            category="Evaluation",
        ),
        histories=report(
            [
                f"{RESULTS}/reports/figures/{task}_fold{k}_history.png"
                for task in TASKS
                for k in range(n_folds(task))
            ],
            caption="../report/history.rst",
            category="Training",
        ),
    params:
        configfile=CONFIGFILE,
        report=config["report"],
    threads: config["resources"]["report"]["threads"]
    resources:
        **stage_resources("report"),
    log:
        f"{LOGS}/report/cohort.log",
    shell:
        "medcnn report --config {params.configfile} --cohort > {log} 2>&1"

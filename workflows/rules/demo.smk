if config["demo"]["enabled"]:

    rule generate_demo:
        output:
            dicom=directory(f"{config['demo']['out']}/dicom"),
            labels=f"{config['demo']['out']}/labels.csv",
        params:
            medcnn=MEDCNN,
            out=lambda wildcards, output: Path(output.labels).parent,
            patients=config["demo"]["n_patients"],
            size=config["demo"]["image_size"],
            seed=config["demo"]["seed"],
        log:
            f"{LOGS}/demo/generate_demo.log",
        benchmark:
            f"{BENCHMARKS}/demo/generate_demo.tsv",
        conda:
            "../envs/medcnn.yaml"
        shell:
            "{params.medcnn} demo-data {params.out} --patients {params.patients} --size {params.size}"
            " --seed {params.seed} > {log} 2>&1"


if config["demo"]["ct"]["enabled"]:

    rule generate_demo_ct:
        output:
            directory(f"{config['demo']['out']}/ct"),
        params:
            medcnn=MEDCNN,
            out=lambda wildcards, output: Path(output[0]).parent,
            patients=config["demo"]["ct"]["n_patients"],
            size=config["demo"]["ct"]["size"],
            slices=config["demo"]["ct"]["slices"],
            spacing=" ".join(str(v) for v in config["demo"]["ct"]["spacing"]),
            seed=config["demo"]["ct"]["seed"],
        log:
            f"{LOGS}/demo/generate_demo_ct.log",
        benchmark:
            f"{BENCHMARKS}/demo/generate_demo_ct.tsv",
        conda:
            "../envs/medcnn.yaml"
        shell:
            "{params.medcnn} demo-data {params.out} --cohort ct --patients {params.patients}"
            " --size {params.size} --slices {params.slices} --spacing {params.spacing}"
            " --seed {params.seed} > {log} 2>&1"


if config["demo"]["nuclei"]["enabled"]:

    rule generate_demo_nuclei:
        output:
            directory(f"{config['demo']['out']}/nuclei"),
        params:
            medcnn=MEDCNN,
            out=lambda wildcards, output: Path(output[0]).parent,
            tiles=config["demo"]["nuclei"]["n_tiles"],
            size=config["demo"]["nuclei"]["size"],
            seed=config["demo"]["nuclei"]["seed"],
        log:
            f"{LOGS}/demo/generate_demo_nuclei.log",
        benchmark:
            f"{BENCHMARKS}/demo/generate_demo_nuclei.tsv",
        conda:
            "../envs/medcnn.yaml"
        shell:
            "{params.medcnn} demo-data {params.out} --cohort nuclei --tiles {params.tiles}"
            " --size {params.size} --seed {params.seed} > {log} 2>&1"

if config["demo"]["enabled"]:

    rule generate_demo:
        output:
            dicom=directory(f"{config['demo']['out']}/dicom"),
            labels=f"{config['demo']['out']}/labels.csv",
        params:
            out=lambda wildcards, output: Path(output.labels).parent,
            patients=config["demo"]["n_patients"],
            size=config["demo"]["image_size"],
            seed=config["demo"]["seed"],
        log:
            f"{LOGS}/demo/generate_demo.log",
        shell:
            "medcnn demo-data {params.out} --patients {params.patients} --size {params.size}"
            " --seed {params.seed} > {log} 2>&1"

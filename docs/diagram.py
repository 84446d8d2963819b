"""Draw docs/architecture.png: the data flow of DESIGN.md with AWS icons.

Usage: ``python docs/diagram.py`` (needs the ``diagrams`` package and Graphviz's ``dot``).
The PNG is committed; re-run after changing the architecture.
"""

from __future__ import annotations

from pathlib import Path

from diagrams import Cluster, Diagram, Edge
from diagrams.aws.analytics import Athena, Glue, GlueDataCatalog, KinesisDataStreams
from diagrams.aws.database import DynamodbTable
from diagrams.aws.devtools import Codebuild
from diagrams.aws.integration import (
    EventbridgeRule,
    EventbridgeScheduler,
    SimpleNotificationServiceSnsTopic,
    StepFunctions,
)
from diagrams.aws.management import Cloudformation, CloudwatchAlarm
from diagrams.aws.migration import Datasync, DatasyncAgent
from diagrams.aws.security import KMS
from diagrams.aws.storage import SimpleStorageServiceS3Bucket
from diagrams.generic.storage import Storage
from diagrams.onprem.compute import Server
from diagrams.onprem.database import PostgreSQL
from diagrams.onprem.iac import Terraform
from diagrams.onprem.queue import Kafka
from diagrams.programming.language import Python

OUT = Path(__file__).resolve().parent / "architecture"  # diagrams appends .png

GRAPH = {
    "fontsize": "22",
    "labelloc": "t",
    "pad": "0.4",
    "nodesep": "0.5",
    "ranksep": "0.9",
    "splines": "spline",
}
NODE = {"fontsize": "13"}
EDGE = {"fontsize": "12"}
CLUSTER = {"fontsize": "15", "margin": "18"}


def data(label: str = "", color: str = "#1f5fa8") -> Edge:
    return Edge(label=label, color=color, penwidth="2")


def control(label: str = "") -> Edge:
    return Edge(label=label, color="#b5651d", style="dashed")


def aux(label: str = "") -> Edge:
    return Edge(label=label, color="#7a7a7a", style="dotted")


def draw() -> Path:
    with Diagram(
        "hybrid-ingest: streaming + batch ingest into an S3 data lake",
        filename=str(OUT),
        outformat="png",
        show=False,
        direction="LR",
        graph_attr=GRAPH,
        node_attr=NODE,
        edge_attr=EDGE,
    ):
        with Cluster("On premises", graph_attr=CLUSTER):
            apps = Server("applications\n(change events)")
            kafka = Kafka("Kafka topics")
            postgres = PostgreSQL("PostgreSQL\n(logical replication)")
            extracts = Storage("nightly extracts\n(NFS)")
            with Cluster("producers (Avro + KPL aggregation)", graph_attr=CLUSTER):
                producer = Python("producer: spool,\nKPL aggregation")
                bridge = Python("bridge kafka")
                source = Python("source postgres\n(pgoutput)")
                bulk = Python("producers bulk\nParquet + manifest")
            agent = DatasyncAgent("DataSync agent")

        with Cluster("AWS account (terraform/)", graph_attr=CLUSTER):
            stream = KinesisDataStreams("Kinesis\n<prefix>-changes")
            datasync = Datasync("DataSync task")

            with Cluster("S3 lake bucket (SSE-KMS)", graph_attr=CLUSTER):
                landing = SimpleStorageServiceS3Bucket("landing/\nextract + _manifest.json")
                raw = SimpleStorageServiceS3Bucket("raw/\ningest_date/ingest_hour")
                dlq = SimpleStorageServiceS3Bucket("dlq/\nnever dropped")
                curated = SimpleStorageServiceS3Bucket("curated/<table>/\nIceberg data/, metadata/")

            streaming = Glue("Glue streaming job\n<prefix>-stream")

            with Cluster("batch orchestration", graph_attr=CLUSTER):
                schedule = EventbridgeScheduler("Scheduler\nevery 15 min")
                rule = EventbridgeRule("rule: manifest\nObject Created")
                workflow = StepFunctions("Step Functions\n<prefix>-batch")
                merge = Glue("Glue merge job\n<prefix>-merge\nDuckDB | Spark")

            catalog = GlueDataCatalog("Glue Data Catalog\nIceberg tables")
            athena = Athena("Athena\nworkgroup")

            with Cluster("DynamoDB", graph_attr=CLUSTER):
                registry = DynamodbTable("registry\nschemas, specs")
                state = DynamodbTable("state\ncheckpoints, watermarks, locks")
                runs = DynamodbTable("runs\nrun history")

            with Cluster("operations", graph_attr=CLUSTER):
                alarms = CloudwatchAlarm("CloudWatch\nmetrics, alarms, logs")
                sns = SimpleNotificationServiceSnsTopic("SNS\n<prefix>-alerts")
                kms = KMS("KMS key\n(rotation)")

        with Cluster("Delivery", graph_attr=CLUSTER):
            cfn = Cloudformation("CFN/seed.yaml")
            build = Codebuild("CodeBuild\nbuildspec.yml")
            tf = Terraform("terraform apply")

        # streaming path
        apps >> data() >> producer
        kafka >> data("JSON change events") >> bridge >> data() >> producer
        postgres >> data("committed changes") >> source >> data() >> producer
        source >> data("snapshot as a\nfull extract") >> bulk
        producer >> data("Avro single-object\nKPL aggregated") >> stream
        stream >> data() >> streaming
        streaming >> data("Parquet") >> raw
        streaming >> data("bad input", "#c0392b") >> dlq

        # bulk path
        extracts >> data() >> bulk >> data() >> agent >> data() >> datasync >> data() >> landing

        # batch path
        landing >> control("EventBridge") >> rule
        schedule >> control() >> workflow
        rule >> control() >> workflow
        workflow >> control("StartJobRun per table") >> merge
        raw >> data() >> merge
        landing >> data() >> merge
        merge >> data("data files") >> curated
        merge >> control("one Iceberg commit per run") >> catalog
        curated >> aux() >> catalog >> data("Trino SQL") >> athena

        # state and operations
        producer >> aux("schemas") >> registry
        streaming >> aux("checkpoints") >> state
        merge >> aux("watermark, lock") >> state
        workflow >> aux("lock, history") >> runs
        merge >> aux("rows, DlqRecords,\nFreshnessSeconds") >> alarms
        [streaming, stream] >> aux() >> alarms
        workflow >> aux("failures") >> sns
        alarms >> aux() >> sns
        kms >> aux("encrypts stream, tables, lake, logs") >> stream

        # delivery
        cfn >> control() >> build >> control() >> tf

    return OUT.with_suffix(".png")


if __name__ == "__main__":
    print(draw())

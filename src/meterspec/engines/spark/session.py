"""A SparkSession for the engine: local[N] on this machine or any cluster master URL, quiet,
and refused in one line when Java is missing (pyspark would otherwise fail late or wait).

Spark's JVM logs to the process's standard error, which `meterspec run` keeps for the error
report: the session logs only errors (a log4j2 file in the job's directory), shows no progress
bars and starts no web UI. Local Python workers are this interpreter, so they import the same
meterspec; on a cluster, meterspec must be installed on the executors (docs/engines.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

JAVA_TIMEOUT = 30  # seconds `java -version` may take before the machine's Java counts as broken
LOG4J2 = """rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark: %p %c{1}: %m%n
"""


class JavaMissingError(OSError):
    """No usable Java for Spark: one line, said before anything starts."""


def check_java() -> str:
    """The java command Spark will run (JAVA_HOME's, else PATH's), or JavaMissingError."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    where = f"JAVA_HOME={home}" if home else "PATH"
    if not java or not os.access(java, os.X_OK):
        raise JavaMissingError(f"--engine spark needs Java 17 or later: no java in {where} "
                               "(install a JDK or set JAVA_HOME)")
    try:
        subprocess.run([java, "-version"], capture_output=True, check=True,
                       timeout=JAVA_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as error:
        raise JavaMissingError(f"--engine spark needs Java 17 or later: {java} -version "
                               f"failed ({error})") from None
    return java


def start(master: str | None, threads: int | None, workdir: str,
          partitions: int | None = None) -> SparkSession:
    """The session (Spark reuses one already running in this process): `master` (default
    local[threads], local[*] without threads), `partitions` shuffle partitions (default: the
    cores Spark sees)."""
    check_java()
    from pyspark.sql import SparkSession

    local = master is None or master.startswith("local")
    if local and "PYSPARK_PYTHON" not in os.environ:
        os.environ["PYSPARK_PYTHON"] = sys.executable
    log4j = os.path.join(workdir, "log4j2.properties")
    with open(log4j, "w", encoding="utf-8") as out:
        out.write(LOG4J2)
    builder = (SparkSession.builder
               .master(master or f"local[{threads or '*'}]")
               .appName("meterspec")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.extraJavaOptions",
                       f"-Dlog4j2.configurationFile=file:{log4j}")
               .config("spark.python.worker.reuse", "true"))
    if threads is not None and not local:
        builder = builder.config("spark.executor.cores", str(threads))
    if partitions is not None:
        builder = builder.config("spark.sql.shuffle.partitions", str(partitions)) \
            .config("spark.default.parallelism", str(partitions))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session

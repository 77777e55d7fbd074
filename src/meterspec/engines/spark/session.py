"""A SparkSession for the engine: local[N] on this machine or any cluster master URL, quiet,
and refused in one line when Java is missing (pyspark would otherwise fail late or wait).

Spark's JVM would write to the process's standard output and error, which `meterspec run`
keeps for the readings and the error report: a JVM started here writes to spark.log in the
job's directory instead, logs only errors (a log4j2 file beside it), shows no progress bars
and starts no web UI. Local Python workers are this interpreter, so they import the same
meterspec; on a cluster, meterspec must be installed on the executors (docs/engines.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

from meterspec.errors import first_line

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

JAVA_TIMEOUT = 30  # seconds `java -version` may take before the machine's Java counts as broken
LOG4J2 = """rootLogger.level = error
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark: %p %c{1}: %m%n
"""


class JavaMissingError(OSError):
    """No usable Java for Spark: one line, said before anything starts."""


class SparkStartError(OSError):
    """Spark's JVM refused to start (too little memory, a bad master URL): its one line."""


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
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    local = master is None or master.startswith("local")
    if local and "PYSPARK_PYTHON" not in os.environ:
        os.environ["PYSPARK_PYTHON"] = sys.executable
    log4j = os.path.join(workdir, "log4j2.properties")
    with open(log4j, "w", encoding="utf-8") as out:
        out.write(LOG4J2)
    conf = (SparkConf().setMaster(master or f"local[{threads or '*'}]").setAppName("meterspec")
            .set("spark.ui.enabled", "false").set("spark.ui.showConsoleProgress", "false")
            .set("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j}")
            .set("spark.python.worker.reuse", "true"))
    if threads is not None and not local:
        conf.set("spark.executor.cores", str(threads))
    if partitions is not None:
        conf.set("spark.sql.shuffle.partitions", str(partitions))
        conf.set("spark.default.parallelism", str(partitions))
    if SparkContext._active_spark_context is None and SparkContext._gateway is None:
        # The JVM's own output (its start-up warnings, its log) goes to a file, never to the
        # command's standard output (the readings) or error (the report).
        with open(os.path.join(workdir, "spark.log"), "ab") as log:
            gateway = launch_gateway(  # type: ignore[no-untyped-call]
                conf, popen_kwargs={"stdout": log, "stderr": log})
        context = SparkContext(conf=conf, gateway=gateway)
        # pyspark's accumulator thread prints a traceback to standard error (the report)
        # when the JVM dies mid-job; the command says what happened in one line instead.
        server = getattr(context, "_accumulatorServer", None)
        if server is not None:
            server.handle_error = lambda request, address: None
    session = SparkSession.builder.config(conf=conf).getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def jvm_error(error: Exception, workdir: str) -> str:
    """One line for a Spark failure: the JVM's own exception (`java.lang.OutOfMemoryError:
    Java heap space`), from the error while the JVM lives, else from its log (spark.log in
    `workdir`) once it has died; else the error's first line."""
    from py4j.protocol import Py4JJavaError

    if isinstance(error, Py4JJavaError):
        with contextlib.suppress(Exception):  # the JVM is gone: its log says why
            return first_line(str(error.java_exception.toString()))
    try:
        with open(os.path.join(workdir, "spark.log"), encoding="utf-8",
                  errors="replace") as log:
            for line in log:
                if JVM_EXCEPTION.match(line):
                    return line.strip()
    except OSError:
        pass
    return first_line(error)


JVM_EXCEPTION = re.compile(r"(java|scala|org\.apache\.spark)\.[\w.$]*(Error|Exception): ")
"""A line of the JVM's log that names its exception, as Java prints one."""

# The meterspec command and its conformance suite in an image, for any CI:
#
#   docker build -t meterspec .
#   docker run --rm -v "$PWD:/work" meterspec conformance run --impl "python3 adapter.py" \
#       --report report.jsonl --markdown report.md
#   docker run --rm -v "$PWD:/work" --add-host=host.docker.internal:host-gateway \
#       -e METERSPEC_URL=http://host.docker.internal:8080 -e METERSPEC_API_KEY \
#       --entrypoint meterspec-conformance-ci meterspec      # reports in ./conformance-report
#
# (METERSPEC_API_KEY from the host's environment: an admin key, conformance/ADAPTERS.md. On
# Linux the --add-host line names the host, as Docker Desktop does by itself, and the server
# must listen beyond 127.0.0.1; or run with --network host and http://127.0.0.1:8080.)
#
# An adapter in another language: build FROM this image and add its runtime, or serve the
# implementation over HTTP. scripts/conformance-ci.sh (here meterspec-conformance-ci) writes
# report.jsonl, report.md and badge.svg.
FROM python:3.12-slim
COPY . /src/meterspec
RUN pip install --no-cache-dir "/src/meterspec[http]" \
    && install -m 0755 /src/meterspec/scripts/conformance-ci.sh /usr/local/bin/meterspec-conformance-ci \
    && rm -rf /src/meterspec \
    && meterspec --version
WORKDIR /work
ENTRYPOINT ["meterspec"]
CMD ["--help"]

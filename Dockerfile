# The meterspec command and its conformance suite in an image, for any CI:
#
#   docker build -t meterspec .
#   docker run --rm -v "$PWD:/work" meterspec conformance run --impl "python3 adapter.py" \
#       --report report.jsonl --markdown report.md
#   docker run --rm -v "$PWD:/work" -e METERSPEC_URL=http://host.docker.internal:8080 \
#       --entrypoint meterspec-conformance-ci meterspec      # reports in ./conformance-report
#
# An adapter in another language: build FROM this image and add its runtime, or serve the
# implementation over HTTP. scripts/conformance-ci.sh (here meterspec-conformance-ci) writes
# report.jsonl, report.md and badge.svg.
FROM python:3.12-slim
COPY . /src/meterspec
RUN pip install --no-cache-dir /src/meterspec \
    && install -m 0755 /src/meterspec/scripts/conformance-ci.sh /usr/local/bin/meterspec-conformance-ci \
    && rm -rf /src/meterspec \
    && meterspec --version
WORKDIR /work
ENTRYPOINT ["meterspec"]
CMD ["--help"]

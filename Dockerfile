# The creditledger services, for compose.yaml (where Docker runs; not used by `make run`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY services ./services
COPY projections ./projections
RUN pip install --no-cache-dir . && useradd --system creditledger
USER creditledger
ENV CREDITLEDGER_API_HOST=0.0.0.0 CREDITLEDGER_API_PORT=8080
EXPOSE 8080
ENTRYPOINT ["creditledger"]
CMD ["serve"]

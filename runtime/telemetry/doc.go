// Package telemetry is the gateway's observability: Prometheus metrics
// (client_golang) with bounded label sets, OpenTelemetry tracing set-up,
// and the audit stream that copies every committed audit record to a sink
// a SIEM reads. It imports nothing of ours: the gateway hands it plain
// values, and cmd/armoriq wires it in through gateway.Config.
package telemetry

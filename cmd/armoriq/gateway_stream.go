package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"path/filepath"

	"github.com/armoriq/controlplane/runtime/gateway"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/telemetry"
)

// startAuditStream starts streaming committed audit records to the sink of
// --audit-sink. Its position is kept in the data directory, one file per
// sink (a new sink starts at the first record of the chain). The returned
// function stops it.
func startAuditStream(ctx context.Context, e *env, o *gatewayOptions, st store.Store, m *telemetry.Metrics, log *slog.Logger) (stop func(), err error) {
	sink, err := telemetry.ParseSink(ctx, o.auditSink, e.Stdout, telemetry.FileSinkOptions{MaxBytes: int64(o.auditFileMax), Keep: o.auditFileKeep})
	if err != nil {
		return nil, usageErrorf("--audit-sink: %v", err)
	}
	sum := sha256.Sum256([]byte(o.auditSink))
	pos := filepath.Join(o.data, "audit-stream-"+hex.EncodeToString(sum[:6])+".pos")
	s, err := telemetry.NewAuditStream(telemetry.StreamConfig{
		Source: gateway.AuditSource(st), Sink: sink, PositionFile: pos, Metrics: m, Logger: log,
	})
	if err != nil {
		sink.Close()
		return nil, err
	}
	log.Info("streaming audit records", "sink", o.auditSink, "position_file", pos, "after_seq", s.Acked())
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { s.Run(sctx); close(done) }()
	return func() {
		cancel()
		<-done
		sink.Close()
	}, nil
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// errorf returns an error of the given kind with a message saying what failed.
func errorf(op string, kind error, format string, args ...any) error {
	return fmt.Errorf("store: %s: %s: %w", op, fmt.Sprintf(format, args...), kind)
}

// dbError translates a driver error into one of our kinds. The driver's text
// is kept for the log; its type is not exposed (no %w across the boundary),
// except context errors, which callers test for.
func dbError(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case isKind(err):
		return err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("store: %s: %w", op, err)
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("store: %s: %w", op, ErrNotFound)
	case isUniqueViolation(err):
		return fmt.Errorf("store: %s: %w", op, ErrConflict)
	case strings.Contains(err.Error(), "sql: database is closed"): // database/sql does not export it
		return fmt.Errorf("store: %s: %w", op, ErrClosed)
	}
	return fmt.Errorf("store: %s: %w: %v", op, ErrUnavailable, err)
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		const constraintUnique, constraintPrimaryKey = 2067, 1555
		return sqErr.Code() == constraintUnique || sqErr.Code() == constraintPrimaryKey
	}
	return false
}

func isKind(err error) bool {
	for _, k := range []error{ErrNotFound, ErrConflict, ErrStale, ErrInvalid, ErrUnavailable, ErrClosed} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

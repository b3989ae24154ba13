package lists

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strconv"
	"strings"
)

// The store's queries are written once with SQLite's ? placeholders;
// PostgreSQL numbers them ($1, $2, ...). Rather than keep two copies of
// every query, or route each through a helper, the PostgreSQL connection
// rewrites the placeholders as a statement reaches the driver, so that
// code using *sql.DB and *sql.Tx as they are runs on both.

// rebindConnector wraps pgx's connector so that its connections rebind.
type rebindConnector struct{ driver.Connector }

func (c rebindConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	pc, ok := conn.(pgxConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("the PostgreSQL driver's connection is a %T, which lacks methods the store needs", conn)
	}
	return &rebindConn{pc}, nil
}

// pgxConn is every interface pgx's stdlib connection implements and
// database/sql uses.
type pgxConn interface {
	driver.Conn
	driver.ConnPrepareContext
	driver.ConnBeginTx
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.NamedValueChecker
}

// rebindConn is a pgx connection whose statements are rebound.
type rebindConn struct{ pgxConn }

func (c *rebindConn) Prepare(query string) (driver.Stmt, error) {
	return c.pgxConn.Prepare(rebind(query))
}

func (c *rebindConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.pgxConn.PrepareContext(ctx, rebind(query))
}

func (c *rebindConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.pgxConn.ExecContext(ctx, rebind(query), args)
}

func (c *rebindConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.pgxConn.QueryContext(ctx, rebind(query), args)
}

// rebind replaces each ? placeholder of query by $1, $2, ... in order.
// A ? inside a quoted string or identifier or a comment is left alone.
func rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			// To the closing quote; a doubled quote is an escaped one
			// and simply closes and reopens.
			j := strings.IndexByte(query[i+1:], c)
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+2])
			i += j + 1
		case c == '-' && strings.HasPrefix(query[i:], "--"):
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+1])
			i += j
		case c == '/' && strings.HasPrefix(query[i:], "/*"):
			j := strings.Index(query[i+2:], "*/")
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+4])
			i += j + 3
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

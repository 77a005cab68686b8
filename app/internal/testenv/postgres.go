package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"hits/testkit"
)

// Postgres is a PostgreSQL server for tests: one we started (Stop and Start
// work) or an external one from DATABASE_URL.
type Postgres struct {
	adminURL string
	dir      string   // temporary root (data, socket, log); "" when external
	proc     *process // nil when external
}

// PostgresOptions tune a started server.
type PostgresOptions struct {
	// Durable keeps fsync on: for benchmarks. Tests turn it off for speed
	// (a clean stop still writes everything, so restart tests are unaffected).
	Durable bool
	// Settings are extra "-c name=value" settings.
	Settings []string
}

// StartPostgres uses DATABASE_URL when set, else starts a server.
func StartPostgres(opts PostgresOptions) (*Postgres, error) {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return &Postgres{adminURL: u}, nil
	}
	return StartOwnPostgres(opts)
}

// StartOwnPostgres always starts a server of our own (for tests that stop it).
func StartOwnPostgres(opts PostgresOptions) (*Postgres, error) {
	initdb, err := postgresBin("initdb")
	if err != nil {
		return nil, err
	}
	server, err := postgresBin("postgres")
	if err != nil {
		return nil, err
	}
	cred, err := serverUser()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hits-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{dir: dir}
	fail := func(err error) (*Postgres, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
	}
	cmd := exec.Command(initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w: %s", err, tail(out, 800)))
	}
	port, err := testkit.FreePort()
	if err != nil {
		return fail(err)
	}
	args := []string{"-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + dir,
		"-c", "max_connections=300", "-c", "shared_buffers=32MB"}
	if !opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off")
	}
	for _, s := range opts.Settings {
		args = append(args, "-c", s)
	}
	p.proc = &process{name: server, args: args, cred: cred, log: filepath.Join(dir, "postgres.log")}
	p.adminURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if cred != nil {
		// The log file must be writable by the server's user; create it as them.
		f, err := os.Create(p.proc.log)
		if err != nil {
			return fail(err)
		}
		f.Close()
		os.Chown(p.proc.log, int(cred.Uid), int(cred.Gid))
	}
	if err := p.Start(); err != nil {
		return fail(err)
	}
	return p, nil
}

// PID is the postmaster's process ID (0 for an external server or when
// stopped), for measuring the server's CPU use.
func (p *Postgres) PID() int {
	if p.proc == nil {
		return 0
	}
	return p.proc.pid()
}

// AdminURL is the URL of the maintenance database.
func (p *Postgres) AdminURL() string { return p.adminURL }

// Start starts a stopped server again on the same port and data directory
// and waits until it accepts connections.
func (p *Postgres) Start() error {
	if p.proc == nil {
		return fmt.Errorf("external PostgreSQL (DATABASE_URL) cannot be started")
	}
	if err := p.proc.start(); err != nil {
		return err
	}
	return waitFor(p.proc, 60*time.Second, func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, p.adminURL)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	})
}

// Stop stops the server (fast shutdown: sessions are cut, data is kept).
func (p *Postgres) Stop() error {
	if p.proc == nil {
		return fmt.Errorf("external PostgreSQL (DATABASE_URL) cannot be stopped")
	}
	return p.proc.stop(syscall.SIGINT, 30*time.Second)
}

// Close stops the server and removes its files.
func (p *Postgres) Close() {
	if p.proc != nil {
		p.Stop()
		os.RemoveAll(p.dir)
	}
}

// CreateDatabase creates a fresh, uniquely named database and returns its URL.
func (p *Postgres) CreateDatabase(ctx context.Context) (string, error) {
	name := "t_" + randomHex(6)
	c, err := pgx.Connect(ctx, p.adminURL)
	if err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(p.adminURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// NewDatabase is CreateDatabase for a test; it fails the test on error.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := p.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// OwnPostgres starts a server only this test uses (so it may stop it), and
// removes it when the test ends.
func OwnPostgres(t testing.TB) *Postgres {
	t.Helper()
	p, err := StartOwnPostgres(PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// SlowCommits makes every COMMIT of a hits batch in the database at url
// (one that wrote instance_hits) sleep for d inside PostgreSQL, through a
// deferred constraint trigger: the window in which a test can lose COMMIT's
// answer. Like a real COMMIT waiting for its WAL flush it goes on when the
// client cancels (pgx sends a cancel request when a deadline cuts a query
// off); terminating the session rolls it back.
func SlowCommits(t testing.TB, url string, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, fmt.Sprintf(`
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN PERFORM pg_sleep(%g); EXCEPTION WHEN query_canceled THEN NULL; END;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT OR UPDATE ON instance_hits
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()`, d.Seconds())); err != nil {
		t.Fatal(err)
	}
}

package testenv

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestPostgresStopStartKeepsDataAndPort(t *testing.T) {
	p := OwnPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := p.NewDatabase(t)
	exec := func(sql string) error {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if p.PID() != 0 {
		t.Error("PID after Stop is not 0")
	}
	if err := exec("SELECT 1"); err == nil {
		t.Fatal("query with the server stopped succeeded")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if p.PID() == 0 || p.PID() == pid {
		t.Errorf("PID after Start = %d (was %d), want a new process", p.PID(), pid)
	}
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v int
	if err := c.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 42 {
		t.Fatalf("after restart: %d, %v; want 42 from before", v, err)
	}
}

func TestRedisKillStart(t *testing.T) {
	r := OwnRedis(t)
	addr := strings.TrimSuffix(strings.TrimPrefix(r.URL(), "redis://"), "/0")
	dial := func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("redis not reachable after start: %v", err)
	}
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err == nil {
		t.Fatal("redis still reachable after Kill")
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err != nil {
		t.Fatalf("redis not reachable after Start: %v", err)
	}
}

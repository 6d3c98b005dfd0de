package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Client calls a node's local API.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client of the API at addr (host:port or a URL),
// authenticated with token.
func NewClient(addr, token string) *Client {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{
		base:  strings.TrimRight(base, "/"),
		token: token,
		http:  &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}},
	}
}

// FromHome returns a client of the daemon of the node in home, with the token
// from api.token. The address is addr when not empty, else the one in
// api.addr (written by the running daemon), else the api setting of
// config.toml, else DefaultAddr.
func FromHome(home, addr string) (*Client, error) {
	tok, err := os.ReadFile(filepath.Join(home, TokenFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no node in %s (run `sangsaeng init` first, or pass --home)", home)
		}
		return nil, err
	}
	if addr == "" {
		if b, err := os.ReadFile(filepath.Join(home, AddrFile)); err == nil {
			addr = strings.TrimSpace(string(b))
		}
	}
	if addr == "" {
		// A stopped daemon leaves no api.addr; the configured address says
		// where it will be, so an error can name the right one.
		var cfg struct {
			API string `toml:"api"`
		}
		if _, err := toml.DecodeFile(filepath.Join(home, "config.toml"), &cfg); err == nil {
			addr = cfg.API
		}
	}
	if addr == "" {
		addr = DefaultAddr
	}
	return NewClient(addr, strings.TrimSpace(string(tok))), nil
}

// Addr returns the base URL the client calls.
func (c *Client) Addr() string { return c.base }

// do sends a request and decodes a JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ctype := ""
	switch v := in.(type) {
	case nil:
	case []byte:
		body, ctype = bytes.NewReader(v), "application/octet-stream"
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	resp, err := c.send(ctx, method, path, body, ctype)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if raw, ok := out.(*[]byte); ok {
		*raw, err = io.ReadAll(resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: bad answer from the daemon: %w", method, path, err)
	}
	return nil
}

// send performs a request and turns error answers into *Error.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, ctype string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readError(resp, method, path)
}

// dialError says that no daemon runs when a request could not connect.
func (c *Client) dialError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("%w at %s (start it with `sangsaeng daemon`)", ErrNoDaemon, c.base)
	}
	return err
}

// readError reads the API error of a response that is not a success.
func readError(resp *http.Response, method, path string) *Error {
	e := &Error{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if json.Unmarshal(b, e) != nil || e.Code == "" {
		e.Code, e.Message = CodeInternal, fmt.Sprintf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return e
}

// ID returns the node's identity and addresses.
func (c *Client) ID(ctx context.Context) (*ID, error) {
	var v ID
	return &v, c.do(ctx, http.MethodGet, "/v1/id", nil, &v)
}

// Status returns the node's health at a glance.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var v Status
	return &v, c.do(ctx, http.MethodGet, "/v1/status", nil, &v)
}

// Peers lists the connected peers.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var v []Peer
	return v, c.do(ctx, http.MethodGet, "/v1/peers", nil, &v)
}

// Partners lists the address book.
func (c *Client) Partners(ctx context.Context) ([]Partner, error) {
	var v []Partner
	return v, c.do(ctx, http.MethodGet, "/v1/partners", nil, &v)
}

// AddPartner adds or updates a partner in the address book and dials it.
func (c *Client) AddPartner(ctx context.Context, p Partner) error {
	return c.do(ctx, http.MethodPost, "/v1/partners", p, nil)
}

// RemovePartner removes a partner from the address book.
func (c *Client) RemovePartner(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/partners/"+url.PathEscape(id), nil, nil)
}

// Channels lists the channels the node is a member of.
func (c *Client) Channels(ctx context.Context) ([]Channel, error) {
	var v []Channel
	return v, c.do(ctx, http.MethodGet, "/v1/channels", nil, &v)
}

// Channel returns one channel by ID or unambiguous name.
func (c *Client) Channel(ctx context.Context, ref string) (*Channel, error) {
	var v Channel
	return &v, c.do(ctx, http.MethodGet, "/v1/channels/"+url.PathEscape(ref), nil, &v)
}

// CreateChannel founds a channel with the node as its admin.
func (c *Client) CreateChannel(ctx context.Context, req CreateChannel) (*Channel, error) {
	var v Channel
	return &v, c.do(ctx, http.MethodPost, "/v1/channels", req, &v)
}

// LoginCode asks the daemon for a one-time code that signs a browser in
// to the dashboard (needs the API token).
func (c *Client) LoginCode(ctx context.Context) (*LoginCode, error) {
	var v LoginCode
	if err := c.do(ctx, "POST", "/v1/dashboard/code", nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Invite adds a peer to a channel and returns an invite code for it.
func (c *Client) Invite(ctx context.Context, channel, peer string) (*Invite, error) {
	var v Invite
	return &v, c.do(ctx, http.MethodPost, "/v1/channels/"+url.PathEscape(channel)+"/invite", InviteRequest{Peer: peer}, &v)
}

// Join joins a channel with an invite code.
func (c *Client) Join(ctx context.Context, code string) (*Channel, error) {
	var v Channel
	return &v, c.do(ctx, http.MethodPost, "/v1/join", JoinRequest{Code: code}, &v)
}

// RemoveMember removes a member from a channel; the node must be an admin.
func (c *Client) RemoveMember(ctx context.Context, channel, peer string) (*Channel, error) {
	var v Channel
	return &v, c.do(ctx, http.MethodPost, "/v1/channels/"+url.PathEscape(channel)+"/remove-member", RemoveMember{Peer: peer}, &v)
}

// Publish signs, stores and publishes a record in a channel.
func (c *Client) Publish(ctx context.Context, channel string, p Publish) (*Published, error) {
	var v Published
	return &v, c.do(ctx, http.MethodPost, "/v1/channels/"+url.PathEscape(channel)+"/records", p, &v)
}

// SetProfile sets the company profile and shares it in every channel.
func (c *Client) SetProfile(ctx context.Context, p Profile) error {
	return c.do(ctx, http.MethodPut, "/v1/profile", p, nil)
}

// Get returns a record by CID.
func (c *Client) Get(ctx context.Context, cid string) (*Record, error) {
	var v Record
	return &v, c.do(ctx, http.MethodGet, "/v1/records/"+url.PathEscape(cid), nil, &v)
}

// GetRaw returns a record's signed envelope bytes.
func (c *Client) GetRaw(ctx context.Context, cid string) ([]byte, error) {
	var v []byte
	return v, c.do(ctx, http.MethodGet, "/v1/records/"+url.PathEscape(cid)+"?raw=1", nil, &v)
}

// Records lists records, newest first: q.Limit of them (following the
// daemon's pages), or the daemon's first page when q.Limit is 0.
func (c *Client) Records(ctx context.Context, q Query) ([]Record, error) {
	var out []Record
	for {
		page, next, err := c.RecordsPage(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if q.Limit == 0 || len(out) >= q.Limit || next == "" {
			if out == nil {
				out = []Record{}
			}
			return out, nil
		}
		q.Cursor, q.Limit = next, q.Limit-len(page)
	}
}

// RecordsPage lists one page of records, newest first, and returns the
// cursor of the next page ("" after the last). The daemon ends a page at
// q.Limit records or some 4 MiB of JSON, whichever comes first.
func (c *Client) RecordsPage(ctx context.Context, q Query) ([]Record, string, error) {
	v := url.Values{}
	for k, s := range map[string]string{"channel": q.Channel, "kind": q.Kind, "author": q.Author, "since": q.Since, "cursor": q.Cursor} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(min(q.Limit, 10000)))
	}
	path := "/v1/records?" + v.Encode()
	resp, err := c.send(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var out []Record
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, "", fmt.Errorf("GET %s: bad answer from the daemon: %w", path, err)
	}
	return out, resp.Header.Get(NextCursorHeader), nil
}

// Verify checks a signed envelope against the node's view: signature, CID,
// schema, membership and chain position.
func (c *Client) Verify(ctx context.Context, envelope []byte) (*Verify, error) {
	var v Verify
	return &v, c.do(ctx, http.MethodPost, "/v1/verify", envelope, &v)
}

// VerifyCID checks a stored record.
func (c *Client) VerifyCID(ctx context.Context, cid string) (*Verify, error) {
	var v Verify
	return &v, c.do(ctx, http.MethodGet, "/v1/verify/"+url.PathEscape(cid), nil, &v)
}

// Kinds lists the record kinds the node knows.
func (c *Client) Kinds(ctx context.Context) ([]string, error) {
	var v []string
	return v, c.do(ctx, http.MethodGet, "/v1/kinds", nil, &v)
}

// Schema returns a kind's JSON Schema.
func (c *Client) Schema(ctx context.Context, kind string) (json.RawMessage, error) {
	var v []byte
	return v, c.do(ctx, http.MethodGet, "/v1/kinds/"+url.PathEscape(kind), nil, &v)
}

// Metrics returns the node's Prometheus metrics in the text format.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	var v []byte
	return v, c.do(ctx, http.MethodGet, "/metrics", nil, &v)
}

// WaitReady polls the API until it answers or ctx ends.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		if _, err := c.ID(ctx); err == nil {
			return nil
		} else if !errors.Is(err, ErrNoDaemon) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Receipts returns what each member's newest receipt of ch says it holds
// of this node's records; with request, the node first asks every
// connected member for a receipt now.
func (c *Client) Receipts(ctx context.Context, ch string, request bool) ([]Receipt, error) {
	var v []Receipt
	method := http.MethodGet
	if request {
		method = http.MethodPost
	}
	return v, c.do(ctx, method, "/v1/channels/"+url.PathEscape(ch)+"/receipts", nil, &v)
}

// Keys returns the company's key log.
func (c *Client) Keys(ctx context.Context) (*Keys, error) {
	var v Keys
	return &v, c.do(ctx, http.MethodGet, "/v1/keys", nil, &v)
}

// RotateKey makes a new signing key and puts it in force in place of the
// node's.
func (c *Client) RotateKey(ctx context.Context, note string) (*KeyChanged, error) {
	var v KeyChanged
	return &v, c.do(ctx, http.MethodPost, "/v1/keys/rotate", KeyChange{Note: note}, &v)
}

// AddDeviceKey makes a key for another server of the company.
func (c *Client) AddDeviceKey(ctx context.Context, note string) (*KeyChanged, error) {
	var v KeyChanged
	return &v, c.do(ctx, http.MethodPost, "/v1/keys/devices", KeyChange{Note: note}, &v)
}

// RevokeKey takes a key out of force.
func (c *Client) RevokeKey(ctx context.Context, req KeyChange) error {
	return c.do(ctx, http.MethodPost, "/v1/keys/revoke", req, nil)
}

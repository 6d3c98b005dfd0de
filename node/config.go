package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// Files and directories in a node's home.
const (
	IdentityFile = "identity.key"
	ConfigFile   = "config.toml"
	DataDir      = "data"
)

// Config is a node's configuration: config.toml in its home, overridable by
// SANGSAENG_* environment variables and flags.
type Config struct {
	// Home is the node's home directory; it is not stored in the file.
	Home string `toml:"-"`
	// Name is the company's display name, shared in its profile record.
	Name string `toml:"name"`
	// BRN is the company's business registration number (사업자등록번호),
	// 10 digits, shared in its profile when set.
	BRN string `toml:"brn,omitempty"`
	// Listen are the libp2p listen addresses.
	Listen []string `toml:"listen"`
	// API is the host:port of the local API; keep it on loopback.
	API string `toml:"api"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// EncryptionKeyFile names a file of 32 random bytes; when set, the store
	// is encrypted at rest with it.
	EncryptionKeyFile string `toml:"encryption_key_file,omitempty"`
	// MDNS turns on discovery of partners on the local network.
	MDNS bool `toml:"mdns"`
	// Peers are extra peers, as /p2p/ multiaddrs, that may connect even
	// without a shared channel: relays and bootstrap peers.
	Peers []string `toml:"peers,omitempty"`
	// Relay configures circuit relay v2: this node as a relay for its
	// partners, and the relays it keeps a slot at when it is behind NAT.
	Relay RelayConfig `toml:"relay"`
	// SyncInterval is how often the node runs anti-entropy sync with its partners.
	SyncInterval Duration `toml:"sync_interval"`
	// ReceiptInterval is how often, at most, the node publishes a signed
	// receipt of what it holds of each channel, where that changed.
	ReceiptInterval Duration `toml:"receipt_interval"`
	// AuthorQuota is how many tokens per second, in bursts of twice as
	// many, the node gives one author in one channel over gossip: a record
	// of a batch costs 1, a record with a signature of its own 4. The
	// rest wait for sync. 0 turns the quota off.
	AuthorQuota int `toml:"author_quota"`
	// MetricsPublic serves /metrics without the API token. Its labels name
	// partners and channels: leave it off unless a scraper cannot send
	// the token (Prometheus can: authorization.credentials_file).
	MetricsPublic bool `toml:"metrics_public,omitempty"`
	// TimeZone is the IANA zone of times in imported files that carry no
	// offset (and of dates given to export's since): Asia/Seoul when
	// empty.
	TimeZone string `toml:"time_zone,omitempty"`

	// file holds the values config.toml gave, before the overrides of the
	// environment and flags, when the config was loaded from it.
	file *Config
}

// RelayConfig is the [relay] table of config.toml.
type RelayConfig struct {
	// Enabled makes this node a relay for the partners it shares a
	// channel with (and those the operator added), only for them. Turn it
	// on at a node with a public address.
	Enabled bool `toml:"enabled"`
	// MaxReservations is how many partners may hold a slot at once.
	MaxReservations int `toml:"max_reservations"`
	// MaxCircuits is how many relayed connections one partner may have
	// open at once.
	MaxCircuits int `toml:"max_circuits"`
	// Use are the relays this node keeps a slot at while it is not
	// reachable directly, as /p2p/ multiaddrs of partners that run one.
	// Partners reach it through them. Relays named by the invite codes it
	// joined with are used as well.
	Use []string `toml:"use,omitempty"`
}

// Duration is a time.Duration written as text ("30s") in config.toml.
type Duration struct{ time.Duration }

// MarshalText writes the duration as text.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a duration such as "30s" or "5m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// DefaultConfig returns the configuration `sangsaeng init` writes.
func DefaultConfig() *Config {
	return &Config{
		Listen:          []string{"/ip4/0.0.0.0/tcp/4801", "/ip4/0.0.0.0/udp/4801/quic-v1"},
		API:             api.DefaultAddr,
		LogLevel:        "info",
		MDNS:            true,
		SyncInterval:    Duration{30 * time.Second},
		ReceiptInterval: Duration{10 * time.Minute},
		AuthorQuota:     20000,
		Relay:           RelayConfig{MaxReservations: 128, MaxCircuits: 16},
	}
}

// Validate reports the first thing wrong with c, saying what to change.
func (c *Config) Validate() error {
	if len(c.Listen) == 0 {
		return errors.New("config: listen is empty; give at least one address such as /ip4/0.0.0.0/tcp/4801")
	}
	for _, a := range c.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fmt.Errorf("config: listen address %q: %v", a, err)
		}
	}
	for _, a := range c.Peers {
		if _, err := peer.AddrInfoFromString(a); err != nil {
			return fmt.Errorf("config: peer %q must be a multiaddr ending in /p2p/PEER-ID: %v", a, err)
		}
	}
	for _, a := range c.Relay.Use {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			return fmt.Errorf("config: relay.use %q must be a multiaddr ending in /p2p/PEER-ID of a partner that runs a relay: %v", a, err)
		}
		if len(ai.Addrs) == 0 {
			return fmt.Errorf("config: relay.use %q has no address before /p2p/; write it as /ip4/ADDRESS/tcp/4801/p2p/PEER-ID", a)
		}
	}
	if c.Relay.MaxReservations < 1 || c.Relay.MaxCircuits < 1 {
		return fmt.Errorf("config: relay.max_reservations (%d) and relay.max_circuits (%d) must be at least 1", c.Relay.MaxReservations, c.Relay.MaxCircuits)
	}
	host, _, err := net.SplitHostPort(c.API)
	if err != nil {
		return fmt.Errorf("config: api %q must be HOST:PORT: %v", c.API, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("config: api %q is not on loopback; the API holds the company's data, keep it on 127.0.0.1", c.API)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("config: %v", err)
	}
	if c.AuthorQuota < 0 {
		return fmt.Errorf("config: author_quota %d is negative; use 0 for no quota", c.AuthorQuota)
	}
	if c.SyncInterval.Duration < time.Second {
		return fmt.Errorf("config: sync_interval %s is below one second", c.SyncInterval)
	}
	if c.ReceiptInterval.Duration < time.Second {
		return fmt.Errorf("config: receipt_interval %s is below one second", c.ReceiptInterval)
	}
	if c.TimeZone != "" {
		if _, err := time.LoadLocation(c.TimeZone); err != nil {
			return fmt.Errorf("config: time_zone %q: %v (use an IANA name such as Asia/Seoul or Asia/Ho_Chi_Minh)", c.TimeZone, err)
		}
	}
	return nil
}

// zone returns the zone of TimeZone (Asia/Seoul when empty or unknown).
func (c *Config) zone() *time.Location {
	name := c.TimeZone
	if name == "" {
		name = "Asia/Seoul"
	}
	if z, err := time.LoadLocation(name); err == nil {
		return z
	}
	return time.FixedZone("KST", 9*3600)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

// InitOptions are the choices `sangsaeng init` takes.
type InitOptions struct {
	Name              string
	Listen            []string
	API               string
	EncryptionKeyFile string
}

// ErrExists is returned by Init when the home already holds an identity.
var ErrExists = errors.New("a node identity already exists")

// Init creates a node's home: identity.key (ed25519, 0600), config.toml,
// api.token (0600) and data/. It never overwrites an existing identity.
func Init(home string, o InitOptions) (*Config, error) {
	if _, err := os.Stat(filepath.Join(home, IdentityFile)); err == nil {
		return nil, fmt.Errorf("init %s: %w (use another --home, or delete it to start over)", home, ErrExists)
	}
	cfg := DefaultConfig()
	cfg.Home = home
	cfg.Name = o.Name
	if len(o.Listen) > 0 {
		cfg.Listen = o.Listen
	}
	if o.API != "" {
		cfg.API = o.API
	}
	if o.EncryptionKeyFile != "" {
		abs, err := filepath.Abs(o.EncryptionKeyFile)
		if err != nil {
			return nil, err
		}
		if _, err := readEncryptionKey(abs); err != nil {
			return nil, err
		}
		cfg.EncryptionKeyFile = abs
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(home, DataDir), 0o700); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	// O_EXCL: two inits racing cannot both write an identity.
	if err := writeKeyFile(filepath.Join(home, IdentityFile), key); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("init %s: %w", home, ErrExists)
		}
		return nil, fmt.Errorf("init: %w", err)
	}
	tok := make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(home, api.TokenFile), []byte(hex.EncodeToString(tok)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if err := cfg.Save(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Save writes c to config.toml in its home.
func (c *Config) Save() error {
	var buf bytes.Buffer
	buf.WriteString("# sangsaeng node configuration. Environment variables SANGSAENG_NAME,\n# SANGSAENG_API, SANGSAENG_LISTEN (comma-separated) and SANGSAENG_LOG_LEVEL override it.\n")
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(c.Home, ConfigFile), buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// LoadConfig reads config.toml from home and applies SANGSAENG_* overrides.
// The file's own values are kept apart: a change the node saves (see
// Node.SetProfile) edits them, so an override never lands in the file.
func LoadConfig(home string) (*Config, error) {
	cfg, err := readConfigFile(home)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no node in %s (run `sangsaeng init` first, or pass --home)", home)
		}
		return nil, err
	}
	cfg.file = cfg.clone()
	if v := os.Getenv("SANGSAENG_NAME"); v != "" {
		cfg.Name = v
	}
	if v := os.Getenv("SANGSAENG_API"); v != "" {
		cfg.API = v
	}
	if v := os.Getenv("SANGSAENG_LISTEN"); v != "" {
		cfg.Listen = strings.Split(v, ",")
	}
	if v := os.Getenv("SANGSAENG_LOG_LEVEL"); v != "" {
		cfg.LogLevel = v
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// readConfigFile reads config.toml from home over the defaults, without
// the overrides of the environment.
func readConfigFile(home string) (*Config, error) {
	cfg := DefaultConfig()
	path := filepath.Join(home, ConfigFile)
	md, err := toml.DecodeFile(path, cfg)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return nil, fmt.Errorf("config %s: unknown setting %q", path, un[0].String())
	}
	cfg.Home = home
	return cfg, nil
}

// clone returns a copy of c that shares no slice with it.
func (c *Config) clone() *Config {
	d := *c
	d.Listen = append([]string(nil), c.Listen...)
	d.Peers = append([]string(nil), c.Peers...)
	d.Relay.Use = append([]string(nil), c.Relay.Use...)
	d.file = nil
	return &d
}

// edit applies change to c and to the values config.toml holds, and writes
// those back: the file as it is on disk now (an operator's edits since the
// node started are kept), or as it was loaded when it is gone, or c itself
// when c was not loaded from a file. The overrides of the environment and
// flags, which are only in c, never reach the file. Callers serialise
// edits (Node.cfgMu).
func (c *Config) edit(change func(*Config)) error {
	file, err := readConfigFile(c.Home)
	switch {
	case errors.Is(err, os.ErrNotExist) && c.file != nil:
		file = c.file.clone()
	case errors.Is(err, os.ErrNotExist):
		file = c.clone()
	case err != nil:
		return fmt.Errorf("%w; fix the file, then try again", err)
	}
	change(file)
	if err := file.Save(); err != nil {
		return err
	}
	change(c)
	if c.file != nil {
		c.file = file.clone()
	}
	return nil
}

// Identity reads the node's private key.
func (c *Config) Identity() (crypto.PrivKey, error) {
	return readKeyFile("identity", filepath.Join(c.Home, IdentityFile))
}

// PeerID returns the node's peer ID as text.
func (c *Config) PeerID() (string, error) {
	k, err := c.Identity()
	if err != nil {
		return "", err
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// readEncryptionKey reads a 32-byte key file.
func readEncryptionKey(path string) ([]byte, error) {
	k, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("encryption key %s holds %d bytes; it must hold exactly 32 random bytes (head -c 32 /dev/urandom > %s)", path, len(k), path)
	}
	return k, nil
}

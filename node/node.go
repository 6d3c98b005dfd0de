package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"golang.org/x/time/rate"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// Node is a running sangsaeng node: its libp2p host, its channels on
// gossipsub, its store and its local API.
type Node struct {
	cfg *Config
	log *slog.Logger
	key crypto.PrivKey // the identity key: the company's first, the host's
	// signer is the key records are signed with (keys.go); keyMu is held
	// for reading by Publish, for writing by a change of the key log.
	signer   atomic.Pointer[signingKey]
	receipts receipts
	keyMu    sync.RWMutex
	self     peer.ID
	host     host.Host
	ps       *pubsub.PubSub
	store    *store.Store

	gov      *governance
	partners *partnerBook
	events   *hub
	metrics  *metrics
	gater    *gater
	mesh     meshes
	sync     *syncer
	penalty  penalties
	doubts   doubts
	quota    quotas
	relays   *relayKeeper
	dht      *dht.IpfsDHT
	relay    *relayv2.Relay // when relay.enabled
	// redial wakes dialLoop when a partner's connections close.
	redial    chan struct{}
	sessions  sessions  // the dashboard's (session.go)
	dialBacks dialBacks // windows for AutoNAT's dial-back (dialback.go)
	// offline: peer.ID → time.Time its last connection closed (dialLoop),
	// for status.
	offline  sync.Map
	scoresMu sync.Mutex
	scores   map[peer.ID]float64
	health   health
	// putFault, when set (by tests only), fails the writes of put.
	putFault atomic.Pointer[func() error]

	// cfgMu serialises changes of cfg and of config.toml; it guards the
	// profile (cfg.Name, cfg.BRN), the one part of cfg that changes.
	cfgMu sync.RWMutex

	importMu sync.Mutex // one import at a time (import.go)
	// profileMu serialises SetProfile, so that the profile last saved is
	// the one last shared.
	profileMu sync.Mutex

	mu     sync.Mutex
	topics map[cid.Cid]*channelTopic
	// retired holds the topics of channels' past membership epochs, by
	// name (see subscribe).
	retired map[string]retiredTopic
	// pubQueue feeds the publisher, the one goroutine that signs.
	pubQueue chan *pubReq
	// gossipQueue feeds the gossiper, which hands stored records to
	// gossipsub in seq order.
	gossipQueue chan gossipItem
	// ownTop is the publisher's own: the last record it stored, by channel.
	ownTop map[cid.Cid]ownTop
	// ownFromOutside counts records of the node's own stored from
	// partners (see lastSigned).
	ownFromOutside atomic.Uint64
	// putQueue feeds the writer, which stores received records in batches.
	putQueue   chan *putReq
	checkQueue chan *checkJob
	writerDone chan struct{}
	started    atomic.Bool
	gaps       gapChecks
	tails      tailChecks
	// forksSent counts the forks whose records a sync answer has sent,
	// by (asker, channel).
	forksSent struct {
		mu sync.Mutex
		m  map[peerChannel]int
	}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mdns   mdns.Service
	closed bool
}

// channelTopic is a channel the node has joined on gossipsub.
type channelTopic struct {
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	name  string // the topic of the channel's current membership epoch
}

// Option configures New.
type Option func(*options)

type options struct {
	log      *slog.Logger
	natMap   bool
	storeFn  func(*store.Options)
	hostOpts []libp2p.Option
	noNATv2  bool
}

// WithLogger sets the node's logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithoutNATPortMap turns off UPnP / NAT-PMP port mapping (tests, and nodes
// with a public address).
func WithoutNATPortMap() Option { return func(o *options) { o.natMap = false } }

// WithHostOptions adds options to the libp2p host's, after the node's own
// (tests on a simulated network replace its transports this way).
func WithHostOptions(opts ...libp2p.Option) Option {
	return func(o *options) { o.hostOpts = append(o.hostOpts, opts...) }
}

// withoutAutoNATv2 turns AutoNAT v2 off (tests on a simulated network: its
// dial-back host uses real sockets).
func withoutAutoNATv2() Option { return func(o *options) { o.noNATv2 = true } }

// WithStoreOptions adjusts the store's options before it opens.
func WithStoreOptions(fn func(*store.Options)) Option { return func(o *options) { o.storeFn = fn } }

// New opens the node's store and creates its libp2p host and gossipsub
// router. It does not dial anyone or serve the API; Start and Run do.
//
// Defaults: no logging; NAT port mapping on; mDNS per the config.
func New(cfg *Config, opts ...Option) (*Node, error) {
	o := options{log: slog.New(slog.NewTextHandler(io.Discard, nil)), natMap: true}
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key, err := cfg.Identity()
	if err != nil {
		return nil, err
	}
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg: cfg, log: o.log.With("node", shortID(self)), key: key, self: self,
		topics: map[cid.Cid]*channelTopic{}, events: newHub(), metrics: newMetrics(),
		pubQueue: make(chan *pubReq, 4*maxPubBatch), gossipQueue: make(chan gossipItem, 64), ownTop: map[cid.Cid]ownTop{},
		putQueue: make(chan *putReq, 4*maxPutBatch), writerDone: make(chan struct{}),
		checkQueue: make(chan *checkJob, 64),
		receipts:   receipts{last: map[cid.Cid]*protocol.Signed{}, forced: map[cid.Cid]time.Time{}},
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	sign, err := cfg.SigningKey()
	if err != nil {
		return nil, err
	}
	sk, err := newSigningKey(sign)
	if err != nil {
		return nil, err
	}
	n.signer.Store(sk)

	sopts := store.DefaultOptions()
	sopts.Logger = n.log
	if cfg.EncryptionKeyFile != "" {
		if sopts.EncryptionKey, err = readEncryptionKey(cfg.EncryptionKeyFile); err != nil {
			return nil, err
		}
	}
	if o.storeFn != nil {
		o.storeFn(&sopts)
	}
	n.store, err = store.Open(filepath.Join(cfg.Home, DataDir), sopts)
	if err != nil {
		if errors.Is(err, store.ErrBadKey) {
			return nil, fmt.Errorf("the encryption key in %s is not the key this node's data was encrypted with: %w", cfg.EncryptionKeyFile, err)
		}
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			n.store.Close()
		}
	}()
	if n.partners, err = loadPartners(n.store); err != nil {
		return nil, err
	}
	if n.gov, err = loadGovernance(n.store, self); err != nil {
		return nil, err
	}
	if err := n.loadKeyLog(); err != nil {
		return nil, err
	}
	n.quota = quotas{rate: rate.Limit(cfg.AuthorQuota), burst: max(singleSignatureCost, 2*cfg.AuthorQuota)}
	n.gater = &gater{n: n}
	for _, s := range cfg.Peers {
		ai, _ := peer.AddrInfoFromString(s) // checked by Validate
		n.gater.extra.Store(ai.ID, true)
	}

	if n.relays, err = newRelayKeeper(n); err != nil {
		return nil, err
	}
	limits, err := resourceManager()
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	rm := gatedStreams{limits, n}
	hopts := []libp2p.Option{
		libp2p.ResourceManager(rm),
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ConnectionGater(n.gater),
		libp2p.EnableHolePunching(),
		libp2p.AddrsFactory(n.addrsFactory),
		libp2p.UserAgent("sangsaeng/" + Version),
	}
	if !o.noNATv2 {
		hopts = append(hopts, libp2p.EnableAutoNATv2())
	}
	hopts = append(hopts, o.hostOpts...)
	if o.natMap {
		hopts = append(hopts, libp2p.NATPortMap())
	}
	if n.host, err = libp2p.New(hopts...); err != nil {
		return nil, fmt.Errorf("libp2p host: %w", err)
	}
	if n.ps, err = newPubSub(n); err != nil {
		n.host.Close()
		return nil, err
	}
	// The relay runs because the operator said so (relay.enabled), not
	// only once AutoNAT v1 finds the node public, as libp2p's
	// EnableRelayService would: a relay on a network AutoNAT cannot judge
	// (a campus, the namespace test's documentation ranges) serves too.
	if cfg.Relay.Enabled {
		if n.relay, err = relayv2.New(n.host, n.relayService()...); err != nil {
			n.host.Close()
			return nil, fmt.Errorf("relay: %w", err)
		}
	}
	if n.dht, err = n.newDHT(); err != nil {
		n.host.Close()
		return nil, fmt.Errorf("partners' DHT: %w", err)
	}
	n.sync = newSyncer(n)
	n.host.SetStreamHandler(JoinID, n.handleJoin)
	n.host.SetStreamHandler(SyncID, n.handleSync)
	n.host.SetStreamHandler(FetchID, n.handleFetch)
	n.host.SetStreamHandler(ReceiptID, n.handleReceipt)
	ok = true
	return n, nil
}

// Version is the node software's version.
const Version = "0.1.0"

// ID returns the node's peer ID.
func (n *Node) ID() peer.ID { return n.self }

// Host returns the node's libp2p host.
func (n *Node) Host() host.Host { return n.host }

// Store returns the node's store.
func (n *Node) Store() *store.Store { return n.store }

// Start joins the node's channels on gossipsub, dials its partners and starts
// mDNS. It returns at once; the work goes on until Close.
func (n *Node) Start() error {
	for _, ch := range n.gov.joined() {
		if err := n.subscribe(ch); err != nil {
			return err
		}
	}
	n.wg.Add(6)
	go n.receiptLoop()
	go n.dialLoop()
	go n.relays.run()
	go n.publisher()
	go n.gossiper()
	go n.writer()
	for range runtime.GOMAXPROCS(0) + 1 {
		n.wg.Add(1)
		go n.checker()
	}
	n.health.start = time.Now()
	n.started.Store(true)
	n.sync.start()
	n.learnAddrs()
	if n.cfg.MDNS {
		n.mdns = mdns.NewMdnsService(n.host, "sangsaeng", &mdnsNotifee{n: n})
		if err := n.mdns.Start(); err != nil {
			n.log.Warn("mDNS did not start", "err", err)
			n.mdns = nil
		}
	}
	n.log.Info("node started", "peer", n.self, "addrs", n.addrs())
	// A key change a crash cut short: finish it, and send the key log
	// where it did not reach (once a partner confirmed the node's heads,
	// as any publish waits for).
	if err := n.finishRotation(); err != nil {
		n.log.Error("cannot finish the key rotation under way", "err", err)
	}
	if n.Signer() != n.self {
		n.log.Info("signing with a key of the company's key log", "key", n.Signer())
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// Heads confirmed first, outside the lock, which a key change
		// waiting behind it would hold Publish up for.
		if entries := len(n.KeyLog().Entries); entries > 0 {
			for _, c := range n.gov.joined() {
				if n.gov.keysHeld(c, n.self) < entries {
					_ = n.sync.confirmOwnHead(n.ctx, c)
				}
			}
		}
		n.keyMu.RLock()
		defer n.keyMu.RUnlock()
		if err := n.spreadKeyLog(n.ctx); err != nil && n.ctx.Err() == nil {
			n.log.Warn("key log not sent to every channel", "err", err)
		}
	}()
	return nil
}

// Close stops the node and closes its store.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	if n.mdns != nil {
		n.mdns.Close()
	}
	n.mu.Lock()
	for _, t := range n.topics {
		t.sub.Cancel()
		t.topic.Close()
	}
	n.mu.Unlock()
	n.events.close()
	dhtErr := n.dht.Close()
	if n.relay != nil {
		dhtErr = errors.Join(dhtErr, n.relay.Close())
	}
	err := errors.Join(n.host.Close(), dhtErr)
	n.wg.Wait()
	return errors.Join(err, n.store.Close())
}

// Run starts the node and serves the local API until ctx ends, then shuts
// down cleanly.
func (n *Node) Run(ctx context.Context) error {
	defer n.Close()
	if err := n.Start(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", n.cfg.API)
	if err != nil {
		return fmt.Errorf("local API on %s: %w (is another daemon running? set api in %s)", n.cfg.API, err, filepath.Join(n.cfg.Home, ConfigFile))
	}
	addrFile := filepath.Join(n.cfg.Home, api.AddrFile)
	// Written whole or not at all: a client reading it meanwhile must not
	// see it empty.
	if err := writeFileAtomic(addrFile, []byte(ln.Addr().String()+"\n"), 0o600); err != nil {
		ln.Close()
		return err
	}
	defer os.Remove(addrFile)
	srv := &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	n.log.Info("local API listening", "addr", "http://"+ln.Addr().String())
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("local API: %w", err)
	}
	n.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.events.close() // ends event streams so Shutdown need not wait for them
	_ = srv.Shutdown(sctx)
	return nil
}

// addrs returns the node's listen addresses with its peer ID.
func (n *Node) addrs() []string {
	var out []string
	for _, a := range n.host.Addrs() {
		out = append(out, a.String()+"/p2p/"+n.self.String())
	}
	return out
}

func shortID(p peer.ID) string {
	s := p.String()
	if len(s) > 8 {
		return s[len(s)-6:]
	}
	return s
}

// errClosed is returned by operations on a closed node.
var errClosed = errors.New("node is closed")

// alive reports errClosed once the node is closing.
func (n *Node) alive() error {
	if n.ctx.Err() != nil {
		return errClosed
	}
	return nil
}

// record returns a stored record, or nil when it is not there.
func (n *Node) record(c cid.Cid) (*protocol.Signed, error) {
	s, err := n.store.Get(c)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return s, err
}

// connected reports whether p has a live connection to the node.
func (n *Node) connected(p peer.ID) bool {
	return n.host.Network().Connectedness(p) == network.Connected
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it over path.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

package node

import (
	"sync"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's Prometheus metrics, in a registry of its own so
// that several nodes can run in one process.
type metrics struct {
	reg        *prometheus.Registry
	accepted   prometheus.Counter
	published  prometheus.Counter
	duplicates prometheus.Counter
	// linkMismatches counts links, seen once both ends are held, that
	// break their kind's rules (checkLinksOf, checkLinksTo).
	linkMismatches prometheus.Counter
	forks          prometheus.Counter
	rejected       *prometheus.CounterVec
	refused        prometheus.Counter
	dhtFound       prometheus.Counter
	overQuota      prometheus.Counter
	gaps           prometheus.Counter
	rpcDropped     prometheus.Counter
	psDropped      *prometheus.CounterVec

	syncRuns    *prometheus.CounterVec
	syncLag     *prometheus.GaugeVec
	syncRefused prometheus.Counter
	syncServed  prometheus.Counter

	storeErrors *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sangsaeng_records_accepted_total", Help: "Records stored: own and received.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sangsaeng_records_published_total", Help: "Records this node signed and stored.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sangsaeng_records_duplicate_total", Help: "Records received that were already stored.",
		}),
		linkMismatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sangsaeng_link_mismatches_total", Help: "Links, checked once both records are held, that break their kind's link rules.",
		}),
		forks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sangsaeng_records_fork_evidence_total", Help: "Records kept as evidence that their author signed two records for one seq.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sangsaeng_records_rejected_total", Help: "Records refused, by the rule they broke.",
		}, []string{"reason"}),
		dhtFound: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sangsaeng_partners_found_by_dht_total", Help: "Partners reached again at an address the partners' DHT gave, after their known addresses failed.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sangsaeng_connections_refused_total", Help: "Connections refused because the peer is not a partner.",
		}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sangsaeng_chain_gaps_total",
			Help: "Gaps in an author's chain that lasted long enough to start a sync.",
		}),
		overQuota: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sangsaeng_records_over_quota_total", Help: "Records ignored on gossip because their author was over its quota; sync brings them later.",
		}),
		rpcDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sangsaeng_pubsub_rpc_dropped_total", Help: "Pubsub RPCs dropped because they touched a channel their sender is not in.",
		}),
		psDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sangsaeng_pubsub_dropped_total", Help: "Pubsub messages dropped by gossipsub's queues.",
		}, []string{"queue"}),
		syncRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sangsaeng_sync_runs_total", Help: "Syncs this node asked for, by result.",
		}, []string{"result"}),
		syncLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sangsaeng_sync_lag_records", Help: "Records a partner held that this node lacked, after the last sync with it.",
		}, []string{"peer", "channel"}),
		syncRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sangsaeng_sync_refused_total", Help: "Sync requests refused because the asker is not a member.",
		}),
		syncServed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sangsaeng_sync_served_records_total", Help: "Records sent to partners that asked by sync.",
		}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sangsaeng_store_errors_total", Help: "Store operations that failed, by operation; the records involved are not held.",
		}, []string{"op"}),
	}
	for _, op := range storeOps {
		m.storeErrors.WithLabelValues(op)
	}
	m.reg.MustRegister(m.storeErrors)
	m.reg.MustRegister(m.overQuota, m.gaps, m.syncRuns, m.syncLag, m.syncRefused, m.syncServed, m.accepted, m.published, m.duplicates, m.linkMismatches, m.forks, m.rejected, m.refused, m.dhtFound, m.rpcDropped, m.psDropped,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// psTracer counts gossipsub's silent drops and follows the node's meshes.
type psTracer struct {
	m    *metrics
	mesh *meshes
	// grafted is called (on gossipsub's event loop: it must not block) when
	// a peer joins a mesh of the node.
	grafted func(p peer.ID, topic string)
}

var _ pubsub.RawTracer = (*psTracer)(nil)

func (t *psTracer) OnNewOutboundStream(peer.ID, protocol.ID) {}
func (t *psTracer) OnClosedOutboundStream(peer.ID)           {}
func (t *psTracer) Join(string)                              {}
func (t *psTracer) Leave(string)                             {}
func (t *psTracer) ValidateMessage(*pubsub.Message)          {}
func (t *psTracer) DeliverMessage(*pubsub.Message)           {}
func (t *psTracer) DuplicateMessage(*pubsub.Message)         {}
func (t *psTracer) ThrottlePeer(peer.ID)                     {}
func (t *psTracer) RecvRPC(*pubsub.RPC)                      {}
func (t *psTracer) SendRPC(*pubsub.RPC, peer.ID)             {}

func (t *psTracer) RejectMessage(_ *pubsub.Message, reason string) {
	switch reason {
	case pubsub.RejectValidationQueueFull:
		t.m.psDropped.WithLabelValues("validation").Inc()
	case pubsub.RejectValidationThrottled:
		t.m.psDropped.WithLabelValues("throttled").Inc()
	}
}

func (t *psTracer) DropRPC(*pubsub.RPC, peer.ID) { t.m.psDropped.WithLabelValues("outbound").Inc() }

func (t *psTracer) UndeliverableMessage(*pubsub.Message) {
	t.m.psDropped.WithLabelValues("subscription").Inc()
}

func (t *psTracer) Graft(p peer.ID, topic string) {
	t.mesh.set(topic, p, true)
	if t.grafted != nil {
		t.grafted(p, topic)
	}
}
func (t *psTracer) Prune(p peer.ID, topic string) { t.mesh.set(topic, p, false) }

// meshes records which peers are in the node's mesh of each topic.
type meshes struct {
	mu sync.Mutex
	m  map[string]map[peer.ID]bool
}

func (m *meshes) set(topic string, p peer.ID, in bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]map[peer.ID]bool{}
	}
	if m.m[topic] == nil {
		m.m[topic] = map[peer.ID]bool{}
	}
	if in {
		m.m[topic][p] = true
	} else {
		delete(m.m[topic], p)
	}
}

// drop removes a disconnected peer from every mesh.
func (m *meshes) drop(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, peers := range m.m {
		delete(peers, p)
	}
}

func (m *meshes) has(topic string, p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[topic][p]
}

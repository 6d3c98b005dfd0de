package node

import (
	"math"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"golang.org/x/time/rate"

	"github.com/libp2p/go-libp2p"
)

// Defences against partners that misbehave: gossipsub peer scoring, a
// per-author quota, and libp2p resource limits per peer.

// Peer score thresholds. A peer that forwards invalid records drops below
// them fast: gossipsub stops gossiping to it, then stops accepting its
// publishes, then ignores it altogether (graylist).
var scoreThresholds = &pubsub.PeerScoreThresholds{
	GossipThreshold:             -100,
	PublishThreshold:            -200,
	GraylistThreshold:           -400,
	AcceptPXThreshold:           0,
	OpportunisticGraftThreshold: 1,
}

// scoreParams penalise behaviour, not quiet: partners publish a few records
// an hour, so mesh delivery deficits must not count against them. All peers
// are often on one address (loopback in tests, one office NAT in life), so
// IP colocation does not count either.
func (n *Node) scoreParams() *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		Topics:                      map[string]*pubsub.TopicScoreParams{},
		AppSpecificScore:            n.appScore,
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    0,
		IPColocationFactorThreshold: 1,
		BehaviourPenaltyWeight:      -10,
		BehaviourPenaltyThreshold:   0,
		BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:               time.Second,
		DecayToZero:                 0.01,
		RetainScore:                 time.Hour,
	}
}

// topicScoreParams weigh invalid records heavily: an honest member checks
// every record before it forwards it, so it never forwards an invalid one.
func topicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight:                    1,
		TimeInMeshQuantum:              time.Second,
		TimeInMeshCap:                  1,
		FirstMessageDeliveriesWeight:   0.01,
		FirstMessageDeliveriesDecay:    pubsub.ScoreParameterDecay(time.Hour),
		FirstMessageDeliveriesCap:      100,
		MeshMessageDeliveriesDecay:     pubsub.ScoreParameterDecay(time.Minute),
		MeshFailurePenaltyDecay:        pubsub.ScoreParameterDecay(time.Minute),
		InvalidMessageDeliveriesWeight: -100,
		InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
	}
}

// penalties is the node's own per-peer score for misbehaviour gossipsub
// cannot see: records from non-members, which an honest peer may forward
// only while it has not yet learned of a membership change, and bad records
// over sync. It decays by half every minute.
type penalties struct {
	mu sync.Mutex
	m  map[peer.ID]penalty
}

type penalty struct {
	v float64
	t time.Time
}

const penaltyHalfLife = time.Minute

func (ps *penalties) add(p peer.ID, v float64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.m == nil {
		ps.m = map[peer.ID]penalty{}
	}
	cur := ps.m[p]
	ps.m[p] = penalty{v: decayed(cur, time.Now()) + v, t: time.Now()}
}

func (ps *penalties) get(p peer.ID) float64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return decayed(ps.m[p], time.Now())
}

func decayed(p penalty, now time.Time) float64 {
	if p.v == 0 {
		return 0
	}
	return p.v * math.Pow(0.5, now.Sub(p.t).Seconds()/penaltyHalfLife.Seconds())
}

// appScore is gossipsub's application-specific score of a peer.
func (n *Node) appScore(p peer.ID) float64 {
	// A grace of a few records: an honest forwarder behind on membership.
	v := n.penalty.get(p) - 5
	if v <= 0 {
		return 0
	}
	return -20 * v
}

// PeerScore returns the gossipsub score of p, as of the last second.
func (n *Node) PeerScore(p peer.ID) float64 {
	n.scoresMu.Lock()
	defer n.scoresMu.Unlock()
	return n.scores[p]
}

func (n *Node) inspectScores(s map[peer.ID]float64) {
	n.scoresMu.Lock()
	n.scores = s
	n.scoresMu.Unlock()
}

// quotas limit how many records per second the node takes from one author
// in one channel over gossip, in tokens: see singleSignatureCost. Records beyond the quota are ignored, not
// stored; sync brings them later, at the pace of one stream per partner, so
// a flooding author cannot starve the others.
type quotas struct {
	mu    sync.Mutex
	rate  rate.Limit
	burst int
	m     map[quotaKey]*rate.Limiter
	now   func() time.Time // time.Now but in tests
}

type quotaKey struct {
	ch     cid.Cid
	author peer.ID
}

// allow takes cost tokens of author's quota in ch, if it has them.
func (q *quotas) allow(ch cid.Cid, author peer.ID, cost int) bool {
	if q.rate <= 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.limiter(ch, author).AllowN(q.clock(), cost)
}

// charge takes cost tokens of author's quota in ch whether it has them
// or not: for work already done (a signature checked), paid for by the
// records after it.
func (q *quotas) charge(ch cid.Cid, author peer.ID, cost int) {
	if q.rate <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.limiter(ch, author).ReserveN(q.clock(), cost)
}

// limiter returns author's limiter in ch. q.mu is held.
func (q *quotas) limiter(ch cid.Cid, author peer.ID) *rate.Limiter {
	if q.m == nil {
		q.m = map[quotaKey]*rate.Limiter{}
	}
	k := quotaKey{ch, author}
	l := q.m[k]
	if l == nil {
		l = rate.NewLimiter(q.rate, q.burst)
		q.m[k] = l
	}
	return l
}

func (q *quotas) clock() time.Time {
	if q.now != nil {
		return q.now()
	}
	return time.Now()
}

// resourceManager limits what one peer may hold open: a partner is a
// company with one or two nodes, not a swarm.
func resourceManager() (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	perPeer := rcmgr.PartialLimitConfig{
		PeerDefault: rcmgr.ResourceLimits{
			Conns: 8, ConnsInbound: 8, ConnsOutbound: 8,
			Streams: 512, StreamsInbound: 256, StreamsOutbound: 256,
			Memory: 128 << 20,
		},
	}
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(perPeer.Build(limits.AutoScale())))
}

package sched

// Nodes are the plan's nodes in the order their bundles come: node 0 holds
// ranks 0..k-1 and hosts the rendezvous.
func (p Plan) Nodes() []string {
	var ids []string
	for _, a := range p.Assignments {
		if len(ids) == 0 || ids[len(ids)-1] != a.NodeID {
			ids = append(ids, a.NodeID)
		}
	}
	return ids
}

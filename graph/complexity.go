package graph

import (
	"crmsync/graph/generated"
	"crmsync/graph/model"
	"crmsync/store"
)

// complexity weighs list fields by how many items they may return, so the cost limit
// sees a page of 500 subscribers with nested fields for what it is.
func complexity() generated.ComplexityRoot {
	var c generated.ComplexityRoot
	c.SubscriberGroup.Subscribers = pageCost
	c.Query.CampaignSends = pageCost
	c.CampaignSend.Reactions = func(child int, _ *store.ReactionType, first *int, after *string) int {
		return pageCost(child, first, after)
	}
	c.Query.Forms = pageCost
	c.Query.ConsentHistory = idPageCost
	c.Query.Suppression = idPageCost
	c.Mutation.UpsertSubscribers = func(child int, _ string, rows []*model.SubscriberInput) int {
		// Each row is a store write; the payload itself is small.
		return child + len(rows)/10
	}
	return c
}

// pageCost weighs a connection field by its page: each item costs what its
// selected fields cost.
func pageCost(child int, first *int, _ *string) int {
	return 1 + child*listSize(first)
}

// idPageCost is pageCost for a connection field of the record an id names.
func idPageCost(child int, _ string, first *int, after *string) int {
	return pageCost(child, first, after)
}

// listSize is the number of items a connection field may return (its `first`);
// out-of-range values are refused by the resolver itself.
func listSize(first *int) int {
	if first == nil {
		return 50
	}
	return min(max(*first, 1), MaxPageSize)
}

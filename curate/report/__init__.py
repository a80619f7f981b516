"""The static HTML report of a store: summary, histograms, agreement, cost, timelines."""

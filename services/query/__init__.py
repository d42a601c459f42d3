"""Query service: embeds a query with the query tower and searches this model version's collection."""

"""The help desk: what a message is (route), what it does to a ticket (handlers), and
the tickets, threads, staff commands, notices, surveys and timed jobs around them."""

"""The bus: embedded (durable log in the store) and Kafka backends behind one interface."""

ALTER TABLE deliveries ADD CONSTRAINT deliveries_org_id_fkey
    FOREIGN KEY (org_id) REFERENCES organisations (id) ON DELETE CASCADE;
ALTER TABLE outbox ADD CONSTRAINT outbox_org_id_fkey
    FOREIGN KEY (org_id) REFERENCES organisations (id) ON DELETE CASCADE;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_org_id_fkey
    FOREIGN KEY (org_id) REFERENCES organisations (id) ON DELETE CASCADE;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_endpoint_id_fkey
    FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints (id) ON DELETE CASCADE;

"""Background work of a gateway replica: async invocations, cron ticks, queue consumers."""

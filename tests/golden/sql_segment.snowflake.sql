SELECT
  CAST(s."customer_id" AS VARCHAR) AS "id",
  s."email" AS "email"
FROM (
  SELECT
    customer_id,
    email
  FROM customers
  WHERE
    lifetime_value > 100
) AS s
